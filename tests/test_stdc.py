"""STDC1 against PaddleSeg's PP-MattingV2 backbone: the official-format checkpoint rebuilt from the
shared manifest, its backbone tensors loaded strictly, the 1/32 feature compared with PaddleSeg's."""
from pathlib import Path

import numpy as np
import torch

from fastmatte.models import read_state_dict
from fastmatte.models.backbones import STDC1
from fastmatte.models.weights import load_state_dict
from oracle_weights import expected, load_manifest, write_checkpoint

DATA = Path(__file__).parent / "data" / "ppmattingv2_stdc1"


def test_stdc1_matches_paddleseg(tmp_path):
    path = write_checkpoint(load_manifest(DATA), tmp_path / "ppmattingv2-stdc1-human_512.pdparams")
    state = read_state_dict(path)
    backbone = {k[len("backbone."):]: v for k, v in state.items() if k.startswith("backbone.")}
    model = load_state_dict(STDC1(), backbone, str(path), strict=True).eval()
    ref = expected(DATA)
    x = torch.from_numpy(ref["net_input"])  # (image - 0.5) / 0.5, what the backbone gets
    with torch.no_grad():
        feats = model(x)
    h, w = x.shape[-2:]
    assert [tuple(f.shape) for f in feats] == [(1, c, h // s, w // s) for c, s in
                                               zip(STDC1.feat_channels, (2, 4, 8, 16, 32))]
    want = ref["backbone_feat4"]
    rel = np.abs(feats[4].numpy() - want).max() / np.abs(want).max()
    assert rel < 1e-4, rel

"""PaddleSeg's Matting HRNet-W18 (PP-Matting backbone) against PaddleSeg's own features.

The official .pdparams is rebuilt from tests/data/ppmatting_hrnet_w18/manifest.json, read with
fastmatte's reader, loaded strictly, and run on the stored network input."""
from pathlib import Path

import numpy as np
import pytest
import torch

from fastmatte.models import read_state_dict
from fastmatte.models.backbones import hrnet_w18, hrnet_w48, paddle_hrnet_names
from oracle_weights import expected, load_manifest, write_checkpoint

DATA = Path(__file__).parent / "data" / "ppmatting_hrnet_w18"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    path = write_checkpoint(load_manifest(DATA), tmp_path_factory.mktemp("hrnet") / "ppmatting.pdparams")
    net = hrnet_w18().eval()
    net.load_state_dict(paddle_hrnet_names(read_state_dict(path)), strict=True)
    ref = expected(DATA)
    with torch.no_grad():
        feats = net(torch.from_numpy(ref["net_input"]))
    return feats, ref


def test_w18_matches_paddleseg(run):
    feats, ref = run
    for i, key in ((3, "backbone_feat3"), (4, "backbone_feat4")):
        want = ref[key]
        got = feats[i].numpy()
        assert got.shape == want.shape, key
        rel = np.abs(got - want).max() / np.abs(want).max()
        assert rel < 1e-4, f"{key}: max abs diff / max abs = {rel:.3g}"


def test_w18_shapes(run):
    feats, _ = run
    shapes = [tuple(f.shape) for f in feats]
    assert shapes == [(1, 64, 160, 128), (1, 18, 80, 64), (1, 36, 40, 32), (1, 72, 20, 16), (1, 144, 10, 8)]
    assert hrnet_w18().feat_channels == [64, 18, 36, 72, 144]


def test_w48_widths():
    net = hrnet_w48().eval()
    assert net.feat_channels == [64, 48, 96, 192, 384]
    with torch.no_grad():
        feats = net(torch.zeros(1, 3, 64, 64))
    assert [f.shape[1] for f in feats] == net.feat_channels
    assert [f.shape[-1] for f in feats] == [32, 16, 8, 4, 2]

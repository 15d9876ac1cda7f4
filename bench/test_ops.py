"""The operators at HD and 4K vs eager PyTorch: tile select/gather/scatter, cross-region
attention (knn_tiles, both attention blocks, forward and forward+backward), Swin's window
attention, the gated conv, the semantic-detail fusion, the guided upsampling and MODNet's IBNorm.

Run with `python -m pytest bench -k hd` (CPU always, CUDA where present). Each group holds
fastmatte and the eager reference of one case at one resolution, so pytest-benchmark's table
shows their ratio (the figures in parentheses)."""
import functools

import pytest
import torch

from fastmatte.bench.timing import synchronize
from fastmatte.bench.area_resize import CASES as AREA_RESIZE_CASES, area_resize_cases
from fastmatte.bench.attention import attention_cases
from fastmatte.bench.gated_conv import gated_conv_cases
from fastmatte.bench.guided_upsample import CASES as UPSAMPLE_CASES, guided_upsample_cases
from fastmatte.bench.ibnorm import CASES as IBNORM_CASES, ibnorm_cases
from fastmatte.bench.resize_concat import CASES as RESIZE_CONCAT_CASES, resize_concat_cases
from fastmatte.bench.tiles import tile_op_cases
from fastmatte.bench.trimap_fusion import CASES as FUSION_CASES, trimap_fusion_cases
from fastmatte.bench.window_attention import window_attention_cases

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
CASES = {
    "tiles": ["select_tiles", "gather_tiles", "scatter_tiles", "gather+scatter", "select+gather+scatter"],
    "attention": ["knn_tiles", "knn_attention", "group_attention", "knn+knn_attention",
                  "knn+both blocks fwd", "knn+both blocks fwd+bwd"],
    "window_attention": [f"window_attention stage {i}" for i in (1, 2, 3, 4)] + ["window_attention x12"],
    "gated_conv": [f"gated_conv C={c}{kind}" for c in (8, 16, 32) for kind in ("", " fwd+bwd")],
    "trimap_fusion": [case[0] for case in FUSION_CASES],
    "guided_upsample": [case[0] for case in UPSAMPLE_CASES],
    "ibnorm": [case[0] for case in IBNORM_CASES],
    "resize_concat": [case[0] for case in RESIZE_CONCAT_CASES],
    "area_resize": [case[0] for case in AREA_RESIZE_CASES],
}
BUILDERS = {"tiles": tile_op_cases, "attention": attention_cases, "window_attention": window_attention_cases,
            "gated_conv": gated_conv_cases, "trimap_fusion": trimap_fusion_cases,
            "guided_upsample": guided_upsample_cases, "ibnorm": ibnorm_cases,
            "resize_concat": resize_concat_cases, "area_resize": area_resize_cases}


@functools.lru_cache(maxsize=None)
def cases(suite, resolution, device):
    return {case.op: case for case in BUILDERS[suite](resolution, device)}


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("resolution", ["hd", "4k"])
@pytest.mark.parametrize("suite,op", [(suite, op) for suite, ops in CASES.items() for op in ops])
@pytest.mark.parametrize("impl", ["fastmatte", "eager"])
def test_op(benchmark, impl, suite, op, resolution, device):
    case = cases(suite, resolution, device)[op]
    fn = case.fastmatte if impl == "fastmatte" else case.eager
    benchmark.group = f"{op} {resolution} {device}"
    benchmark.extra_info.update(tiles=case.tiles, min_bytes=case.min_bytes)
    dev = torch.device(device)

    def timed():
        fn()
        synchronize(dev)

    benchmark.pedantic(timed, rounds=20, warmup_rounds=2)

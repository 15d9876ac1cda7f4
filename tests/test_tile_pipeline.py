"""select -> gather -> refine -> scatter, end to end: compiled, differentiable, equal to eager."""
import pytest
import torch

from fastmatte.ops import gather_tiles, scatter_tiles, select_tiles
from helpers import assert_close, backend_params


def refine_pipeline(trimap, image, coarse, gain, backend):
    # select_tiles has no Triton kernel: the Triton pipeline selects with the compiled default.
    sel = select_tiles(trimap, 24, backend=None if backend == "triton" else backend)
    patches = gather_tiles(image, coarse, sel.tiles, sel.count, tile=8, halo=1, backend=backend)
    refined = patches[:, 3:4, 1:-1, 1:-1] * gain + patches[:, :1, 1:-1, 1:-1] * (1 - gain)
    return scatter_tiles(coarse, refined, sel.tiles, sel.count, sel.tile_map, backend=backend)


def inputs(device):
    trimap = torch.randn(2, 3, 5, 7, device=device)
    image = torch.rand(2, 3, 40, 56, device=device, requires_grad=True)
    coarse = (torch.rand(2, 1, 5, 7, device=device) * 1.2 - 0.1).requires_grad_()
    gain = torch.tensor(0.7, device=device, requires_grad=True)
    return trimap, image, coarse, gain


@pytest.mark.parametrize("device,backend", backend_params(triton=True))
def test_compiled_pipeline_matches_eager_reference(device, backend):
    torch._dynamo.reset()
    trimap, image, coarse, gain = inputs(device)
    compiled = torch.compile(refine_pipeline, fullgraph=True)
    alpha = compiled(trimap, image, coarse, gain, backend)
    expected = refine_pipeline(trimap, image, coarse, gain, "torch")
    assert_close(alpha, expected)

    weight = torch.rand_like(alpha)
    got = torch.autograd.grad((alpha * weight).sum(), (image, coarse, gain))
    want = torch.autograd.grad((expected * weight).sum(), (image, coarse, gain))
    for g, w in zip(got, want):
        assert_close(g, w)

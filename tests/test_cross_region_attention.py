"""fastmatte.nn.CrossRegionAttention: the fused ops give the module the reference's output and
gradients, and each tile only sees its own group."""
import pytest
import torch

from fastmatte import reference
from fastmatte.nn import CrossRegionAttention
from fastmatte.ops import select_tiles
from helpers import assert_close


def selection(device):
    trimap = torch.randn(2, 3, 9, 11, device=device)
    trimap[:, 1] += 0.6  # about half the tiles uncertain
    return select_tiles(trimap, 60)


def small_module(device, **kw):
    torch.manual_seed(3)
    module = CrossRegionAttention(dim=32, heads=2, head_dim=8, k=4, search_range=3, mlp_ratio=2, **kw)
    with torch.no_grad():  # a visible bias, so a wrong table lookup shows
        module.bias_table1.normal_()
        module.bias_table2.normal_()
    return module.to(device)


@pytest.mark.parametrize("device", ["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
@pytest.mark.parametrize("bucketing", ["per_axis", "official"])
def test_fused_module_matches_eager_module(device, bucketing):
    module = small_module(device, bucketing=bucketing)
    sel = selection(device)
    tokens = torch.randn(60, 32, device=device, requires_grad=True)
    fused = module(tokens, sel.tiles, sel.count, sel.tile_map)
    eager = module(tokens, sel.tiles, sel.count, sel.tile_map, backend="torch")
    valid = int(sel.count)
    assert_close(fused[:valid], eager[:valid])
    other = small_module(device, bucketing="official" if bucketing == "per_axis" else "per_axis")
    assert not torch.allclose(other(tokens, sel.tiles, sel.count, sel.tile_map)[:valid], fused[:valid]), \
        "the module must pass its bucketing to the ops"

    names, params = zip(("tokens", tokens), *module.named_parameters())
    weight = torch.randn_like(fused)
    weight[valid:] = 0
    got = torch.autograd.grad((fused * weight).sum(), params)
    want = torch.autograd.grad((eager * weight).sum(), params)
    for name, g, w in zip(names, got, want):
        torch.testing.assert_close(g, w, atol=2e-4, rtol=2e-4, msg=lambda m: f"{name}: {m}")
    grads = dict(zip(names, got))
    assert grads["bias_table1"].abs().sum() > 0 and grads["bias_table2"].abs().sum() > 0


def test_bad_bucketing():
    with pytest.raises(ValueError, match="fastmatte.nn.CrossRegionAttention: bucketing must be "
                                         "\"per_axis\" or \"official\", got 'paper'"):
        CrossRegionAttention(bucketing="paper")


def test_each_tile_sees_only_its_group():
    module = small_module("cpu")
    sel = selection("cpu")
    nbr = reference.knn_tiles(sel.tiles, sel.count, module.k)
    tokens = torch.randn(60, 32)
    out = module(tokens, sel.tiles, sel.count, nbr=nbr)
    outsider = next(j for j in range(int(sel.count)) if j != 0 and j not in nbr[0].tolist())
    changed = tokens.clone()
    changed[outsider] += torch.randn(32)  # not a constant: LayerNorm would remove that
    again = module(changed, sel.tiles, sel.count, nbr=nbr)
    assert torch.equal(out[0], again[0]), "tile 0's output must not depend on a tile outside its group"
    member = int(nbr[0, 0])
    changed = tokens.clone()
    changed[member] += torch.randn(32)
    assert not torch.allclose(out[0], module(changed, sel.tiles, sel.count, nbr=nbr)[0])

"""The int arguments of every public op, the sizes they imply, and the backend= argument of the
models and layers: errors name the op (or model) and the argument and say what was expected;
absurd sizes (fastmatte.ops._checks: a halo wider than the image, or a tensor of more than
2**40 bytes) are refused before anything is allocated, by the Python API (ValueError) and by the
kernels that torch.ops.fastmatte.* reaches directly (RuntimeError). scatter_tiles and gated_conv
take no int argument; scatter_tiles' output size is checked below."""
import importlib
import re

import numpy as np
import pytest
import torch

from fastmatte import ops
from fastmatte.models import CRAMatting
from fastmatte.models.backbones.swin import SwinTransformer
from fastmatte.nn import CrossRegionAttention, GatedConv2d

# The modules, not the functions of the same names that fastmatte.ops exports.
gather_module = importlib.import_module("fastmatte.ops.gather_tiles")
scatter_module = importlib.import_module("fastmatte.ops.scatter_tiles")

OP = torch.ops.fastmatte
I32 = torch.int32
BACKEND_NAMES = 'None, "cpu", "cuda", "triton" or "torch"'
TIB = r"GiB, more than the 1024 GiB \(2\*\*40 bytes\) an op may allocate for one tensor"


def raises(error, text):
    return pytest.raises(error, match=re.escape(text))


def selection(capacity=2):
    return torch.zeros(capacity, 3, dtype=I32), torch.ones(1, dtype=I32)


def attention_inputs(group=False):
    """Three tiles, heads 2, D 4, one (missing) neighbour each, search_range 2's table."""
    q = torch.randn(3, 2, 4)
    kv = torch.randn(3, 2, 2, 4) if group else q
    return q, kv, kv, torch.zeros(3, 3, dtype=I32), torch.full((3, 1), -1, dtype=I32), torch.randn(10, 2)


def call_select_tiles(capacity=4, unknown_class=1):
    return ops.select_tiles(torch.randn(1, 3, 4, 5), capacity, unknown_class)


def call_gather_tiles(tile=8, halo=1):
    return ops.gather_tiles(torch.randn(1, 3, 16, 16), torch.randn(1, 1, 2, 2), *selection(), tile, halo)


def call_knn_tiles(k=2):
    sel = ops.select_tiles(torch.randn(1, 3, 4, 5), 6)
    return ops.knn_tiles(sel.tiles, sel.count, k, sel.tile_map)


def call_window_attention(window=3, wh=3, sh=1):
    return ops.window_attention(torch.randn(1, 5, 7, 24), torch.randn(25, 2), window, [wh, 2], [sh, 1])


def call_trimap_fusion(fg_class=0, unknown_class=1):
    return ops.trimap_fusion(torch.randn(1, 3, 4, 4), torch.rand(1, 1, 8, 8), fg_class, unknown_class)


# (op, argument, call(value), a valid value, the range as the error says it)
INT_ARGUMENTS = [
    ("select_tiles", "capacity", lambda v: call_select_tiles(capacity=v), 4, "[0, 2**31 - 1]"),
    ("select_tiles", "unknown_class", lambda v: call_select_tiles(unknown_class=v), 1,
     "[0, classes - 1 = 2]"),
    ("gather_tiles", "tile", lambda v: call_gather_tiles(tile=v), 8, "[1, 2**31 - 1]"),
    ("gather_tiles", "halo", lambda v: call_gather_tiles(halo=v), 1, "[0, max(H, W) = 16]"),
    ("knn_tiles", "k", lambda v: call_knn_tiles(k=v), 2, "[0, 2**31 - 1]"),
    ("knn_attention", "search_range", lambda v: ops.knn_attention(*attention_inputs(), v), 2,
     "[1, 23170]"),
    ("group_attention", "search_range", lambda v: ops.group_attention(*attention_inputs(True), v), 2,
     "[1, 23170]"),
    ("window_attention", "window", lambda v: call_window_attention(window=v), 3, "[1, 23170]"),
    ("window_attention", "window_size[0]", lambda v: call_window_attention(wh=v), 3, "[1, window = 3]"),
    ("window_attention", "shift[0]", lambda v: call_window_attention(sh=v), 1,
     "[0, window_size[0] - 1 = 2]"),
    ("trimap_fusion", "fg_class", lambda v: call_trimap_fusion(fg_class=v), 0, "[0, 2]"),
    ("trimap_fusion", "unknown_class", lambda v: call_trimap_fusion(unknown_class=v), 1, "[0, 2]"),
]
IDS = [f"{op}-{name}" for op, name, *_ in INT_ARGUMENTS]


def range_ends(text):
    """The ends of "[lo, ... hi]" (2**31 - 1 spelled out)."""
    low, high = text[1:-1].split(", ", 1)
    high = high.rsplit("= ", 1)[-1]
    return int(low), 2 ** 31 - 1 if high == "2**31 - 1" else int(high)


@pytest.mark.parametrize("op,name,call,valid,limits", INT_ARGUMENTS, ids=IDS)
@pytest.mark.parametrize("value", [True, False, 2.0, "2", None])
def test_an_int_argument_of_another_type_is_a_type_error(op, name, call, valid, limits, value):
    with raises(TypeError, f"fastmatte.{op}: {name} must be an int in {limits}, "
                           f"got {value!r} ({type(value).__name__})"):
        call(value)


@pytest.mark.parametrize("op,name,call,valid,limits", INT_ARGUMENTS, ids=IDS)
@pytest.mark.parametrize("which", ["below", "above", "int32 overflow", "int64 overflow", "huge negative"])
def test_an_int_argument_out_of_range_is_a_value_error(op, name, call, valid, limits, which):
    low, high = range_ends(limits)
    value = {"below": low - 1, "above": high + 1, "int32 overflow": 2 ** 31, "int64 overflow": 2 ** 63,
             "huge negative": -2 ** 63 - 1}[which]
    with raises(ValueError, f"fastmatte.{op}: {name} must be an int in {limits}, got {value}"):
        call(value)


@pytest.mark.parametrize("op,name,call,valid,limits", INT_ARGUMENTS, ids=IDS)
@pytest.mark.parametrize("numpy_int", [np.int64, np.int32, np.uint8])
def test_numpy_ints_are_ints(op, name, call, valid, limits, numpy_int):
    torch.manual_seed(0)
    want = call(valid)
    torch.manual_seed(0)
    got = call(numpy_int(valid))
    for a, b in zip(want if isinstance(want, tuple) else [want], got if isinstance(got, tuple) else [got]):
        assert torch.equal(a, b)


def test_the_102_gb_gather_is_refused_before_anything_is_allocated(monkeypatch):
    """The reported case: an HD image, 16 tiles, halo=10000 asked for 16 x 4 x 20008^2 fp32 =
    102 GB. The check runs before the backend is even chosen, so no kernel runs and nothing is
    allocated, whichever backend would have been picked."""
    monkeypatch.setattr(gather_module.BACKENDS, "resolve", lambda *a, **k: pytest.fail("not refused first"))
    image, coarse = torch.rand(1, 3, 1080, 1920), torch.rand(1, 1, 135, 240)
    message = "fastmatte.gather_tiles: halo must be an int in [0, max(H, W) = 1920], got 10000"
    for backend in (None, "cpu", "torch"):
        with raises(ValueError, message):
            ops.gather_tiles(image, coarse, *selection(16), 8, 10000, backend=backend)


# Inputs of a few MB whose outputs would take terabytes.
def huge_gather():  # halo = max(H, W) is allowed, but 64 patches of 2 x 65544^2 fp32 are 2 TiB
    return torch.rand(1, 1, 8, 32768), torch.rand(1, 1, 1, 4096), *selection(64), 8, 32768


def huge_scatter():  # one 1024 x 1024 refined tile on a 1024 x 1024 grid: a 4 TiB alpha
    coarse, refined = torch.rand(1, 1, 1024, 1024), torch.rand(1, 1, 1024, 1024)
    return coarse, refined, *selection(1), torch.zeros(1, 1024, 1024, dtype=I32), "bilinear"


def huge_knn_attention():  # N = 1, K = 2**20, D = 2**20: an fp16 out of 2 TiB
    q = torch.rand(1, 1, 2 ** 20, dtype=torch.float16)
    nbr, table = torch.full((1, 2 ** 20), -1, dtype=I32), torch.rand(2, 1, dtype=torch.float16)
    return q, q, q, torch.zeros(1, 3, dtype=I32), nbr, table, 1


def huge_window():  # one 800 x 800 window: its [1, 640000, 640000] fp32 scores take 1.5 TiB
    return torch.rand(1, 1, 1, 3), torch.rand(1599 ** 2, 1), 800, [800, 800], [0, 0]


HUGE = [
    ("gather_tiles", huge_gather, r"patches would be \[64, 2, 65544, 65544\] {} = 2048.5 ", "float32"),
    ("scatter_tiles", huge_scatter, r"alpha would be \[1, 1, 1048576, 1048576\] {} = 4096.0 ", "float32"),
    ("knn_tiles", lambda: (*selection(1024), 2 ** 31 - 1, None),
     r"nbr would be \[1024, 2147483647\] {} = 8192.0 ", "int32"),
    ("knn_attention", huge_knn_attention, r"out would be \[1, 1048577, 1, 1048576\] {} = 2048.0 ", "float16"),
    ("window_attention", huge_window,
     r"the attention matrix of a window would be \[1, 640000, 640000\] {} = 1525.9 ", "float32"),
]
KERNEL_DTYPES = {"float32": "Float", "float16": "Half", "int32": "Int"}


@pytest.mark.parametrize("op,inputs,message,dtype", HUGE, ids=[case[0] for case in HUGE])
def test_outputs_of_more_than_a_tebibyte_are_refused(op, inputs, message, dtype):
    args = inputs()
    if op == "scatter_tiles":
        args = args[:-1]  # the public function's mode is a keyword with a default
    with pytest.raises(ValueError, match=f"fastmatte.{op}: " + message.format("torch." + dtype) + TIB):
        getattr(ops, op)(*args)


@pytest.mark.parametrize("op,inputs,message,dtype", HUGE, ids=[case[0] for case in HUGE])
def test_the_kernels_refuse_them_too(op, inputs, message, dtype):
    with pytest.raises(RuntimeError, match=f"fastmatte.{op}: " + message.format(KERNEL_DTYPES[dtype]) + TIB):
        getattr(OP, op)(*inputs())


def test_real_4k_workloads_with_a_big_batch_are_not_refused():
    """4K frames, batch 64, every one of the 480 x 270 tiles selected, halo 8: a 76 GB gather and
    a 2 GB alpha pass the checks (meta tensors: nothing is allocated)."""
    batch, grid, tiles = 64, (270, 480), 64 * 270 * 480
    meta = dict(device="meta")
    image, coarse = torch.empty(batch, 3, 2160, 3840, **meta), torch.empty(batch, 1, *grid, **meta)
    selected = torch.empty(tiles, 3, dtype=I32, **meta), torch.empty(1, dtype=I32, **meta)
    assert gather_module._check_inputs(image, coarse, *selected, 8, 8) == (8, 8)
    refined, tile_map = torch.empty(tiles, 1, 8, 8, **meta), torch.empty(batch, *grid, dtype=I32, **meta)
    scatter_module._check_inputs(coarse, refined, *selected, tile_map, "bilinear")


def test_the_kernels_check_int_arguments_when_called_directly():
    image, coarse, trimap = torch.rand(1, 3, 16, 16), torch.rand(1, 1, 2, 2), torch.randn(1, 3, 4, 5)
    cases = [
        (lambda: OP.select_tiles(trimap, 2 ** 31, 1),
         "select_tiles: capacity must be an int in [0, 2**31 - 1], got 2147483648"),
        (lambda: OP.select_tiles(trimap, 4, 3), "select_tiles: unknown_class must be an int in "
                                                "[0, classes - 1 = 2], got 3"),
        (lambda: OP.gather_tiles(image, coarse, *selection(16), 8, 10000),
         "gather_tiles: halo must be an int in [0, max(H, W) = 16], got 10000"),
        (lambda: OP.gather_tiles(image, coarse, *selection(), 2 ** 31, 0),
         "gather_tiles: tile must be an int in [1, 2**31 - 1], got 2147483648"),
        (lambda: OP.knn_tiles(*selection(4), 2 ** 31, None), "knn_tiles: k must be an int in [0, 2**31 - 1]"),
        (lambda: OP.knn_attention(*attention_inputs(), 23171),
         "knn_attention: search_range must be an int in [1, 23170], got 23171"),
        (lambda: OP.group_attention(*attention_inputs(True), 23171),
         "group_attention: search_range must be an int in [1, 23170], got 23171"),
        (lambda: OP.trimap_fusion(torch.randn(1, 3, 4, 4), torch.rand(1, 1, 8, 8), 3, 1),
         "trimap_fusion: fg_class must be an int in [0, 2], got 3"),
    ]
    for call, message in cases:
        with raises(RuntimeError, "fastmatte." + message):
            call()


def test_the_gather_backward_kernel_refuses_huge_gradients():
    with pytest.raises(RuntimeError, match=r"fastmatte.gather_tiles_backward: grad_image would be "
                                           r"\[1, 3, 1048576, 1048576\] Float = 12288.0 " + TIB):
        OP.gather_tiles_backward(torch.zeros(2, 4, 8, 8), *selection(), [1, 3, 2 ** 20, 2 ** 20],
                                 [1, 1, 2 ** 17, 2 ** 17], 8, 0)


def test_the_triton_ops_check_their_arguments_when_called_directly():
    """torch.ops.fastmatte.<op>_triton runs the Python checks itself (before Triton is imported)."""
    image, coarse = torch.rand(1, 3, 16, 16), torch.rand(1, 1, 2, 2)
    cases = [
        (lambda: OP.gather_tiles_triton(image, coarse, *selection(16), 8, 10000), "gather_tiles: halo"),
        (lambda: OP.knn_attention_triton(*attention_inputs(), 0), "knn_attention: search_range"),
        (lambda: OP.group_attention_triton(*attention_inputs(True), 0), "group_attention: search_range"),
        (lambda: OP.window_attention_triton(torch.rand(1, 5, 7, 24), torch.rand(25, 2), 3, [4, 2], [0, 0]),
         "window_attention: window_size[0]"),
    ]
    for call, message in cases:
        with raises(ValueError, "fastmatte." + message + " must be an int in"):
            call()


def cra(backend):
    return CRAMatting.tiny().eval()(torch.rand(1, 3, 32, 32), backend=backend)


def cra_predict(backend):
    return CRAMatting.tiny().eval().predict(torch.rand(1, 3, 32, 32), backend=backend)


def swin(backend):
    model = SwinTransformer(embed_dim=8, depths=(2,), num_heads=(1,), window_size=4)
    return model(torch.rand(1, 3, 32, 32), backend=backend)


def cross_region_attention(backend):
    sel = ops.select_tiles(torch.randn(1, 3, 4, 4), 6)
    layer = CrossRegionAttention(dim=16, heads=2, head_dim=8, k=2, search_range=2)
    return layer(torch.randn(6, 16), sel.tiles, sel.count, sel.tile_map, backend=backend)


def gated_conv(backend):
    return GatedConv2d(4).eval()(torch.rand(1, 4, 8, 8), torch.rand(1, 1, 4, 4), backend=backend)


MODELS = [("CRAMatting", cra), ("CRAMatting", cra_predict), ("SwinTransformer", swin),
          ("fastmatte.nn.CrossRegionAttention", cross_region_attention),
          ("fastmatte.nn.GatedConv2d", gated_conv)]
MODEL_IDS = [call.__name__ for _, call in MODELS]


@pytest.mark.parametrize("owner,call", MODELS, ids=MODEL_IDS)
@pytest.mark.parametrize("backend", ["bogus", "TORCH", 3, ("torch",)])
def test_a_model_blames_its_own_backend_argument(owner, call, backend):
    with raises(ValueError, f"{owner}: backend must be {BACKEND_NAMES}, got {backend!r}"):
        call(backend)


@pytest.mark.parametrize("owner,call", MODELS, ids=MODEL_IDS)
@pytest.mark.parametrize("backend", [None, "cpu", "torch"])
def test_a_model_takes_the_valid_backend_names(owner, call, backend):
    call(backend)


def test_an_op_names_a_bad_backend_argument_the_same_way():
    with raises(ValueError, f"fastmatte.select_tiles: backend must be {BACKEND_NAMES}, got 'bogus'"):
        ops.select_tiles(torch.randn(1, 3, 4, 5), 4, backend="bogus")

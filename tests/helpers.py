"""Shared test helpers: which (device, backend) pairs to run, dtype tolerances, and the
environment of a child Python process."""
import os
from pathlib import Path

import pytest
import torch

import fastmatte

from fastmatte.ops._backend import HAS_TRITON

HAS_CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA GPU")
needs_triton = pytest.mark.skipif(not HAS_TRITON, reason="triton is not installed")


def backend_params(triton: bool):
    """Every compiled backend of an op as pytest params (device, backend). CUDA ones are
    skipped without a GPU; on a GPU machine they must exist, so a missing kernel fails."""
    params = [pytest.param("cpu", "cpu", id="cpu")]
    if triton:
        params.append(pytest.param("cpu", "triton", id="triton-interpreter",
                                   marks=[needs_triton, pytest.mark.triton]))
    params.append(pytest.param("cuda", "cuda", id="cuda", marks=[needs_cuda, pytest.mark.cuda]))
    if triton:
        params.append(pytest.param("cuda", "triton", id="triton-cuda",
                                   marks=[needs_cuda, needs_triton, pytest.mark.cuda, pytest.mark.triton]))
    return params


# Float dtypes per device: fp16/bf16 run everywhere, but the references compute in fp32.
DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]


def tolerance(dtype):
    """(atol, rtol) for comparing a kernel against the reference in `dtype`."""
    return {
        torch.float64: (1e-12, 1e-12),
        torch.float32: (1e-5, 1e-5),
        torch.float16: (2e-3, 2e-3),
        torch.bfloat16: (1.6e-2, 1.6e-2),
    }[dtype]


def assert_close(actual, expected, dtype=None):
    atol, rtol = tolerance(dtype or expected.dtype)
    torch.testing.assert_close(actual, expected, atol=atol, rtol=rtol, equal_nan=True)


def assert_same_bits_across_thread_counts(fn):
    """fn() -> tuple of tensors gives bitwise-equal results with 1, 2 and again 1 CPU thread."""
    threads = torch.get_num_threads()
    try:
        results = []
        for n in (1, 2, 1):
            torch.set_num_threads(n)
            results.append(fn())
    finally:
        torch.set_num_threads(threads)
    for other in results[1:]:
        assert all(torch.equal(a, b) for a, b in zip(results[0], other))


def attention_selection(B, h, w, capacity, k, device, unknown_fraction=0.5):
    """tiles of a random trimap's select_tiles and their reference knn_tiles neighbours, for
    the attention ops' tests: (tiles, nbr, count)."""
    from fastmatte import reference
    from fastmatte.ops import select_tiles

    trimap = torch.randn(B, 3, h, w)
    trimap[:, 1] += torch.where(torch.rand(B, h, w) < unknown_fraction, 9.0, -9.0)
    sel = select_tiles(trimap, capacity, backend="cpu")
    nbr = reference.knn_tiles(sel.tiles, sel.count, k)
    return sel.tiles.to(device), nbr.to(device), int(sel.count)


# Attention test cases (B, h, w, capacity, K, heads, D, search_range, unknown fraction): count <
# capacity (invalid centers), images with fewer than K+1 tiles (-1 members), K = 0, all tiles
# selected, far-apart tiles (the shared out-of-range table entry); small for the interpreter.
ATTENTION_CASES = [
    (2, 4, 5, 10, 8, 8, 16, 4, 0.4),
    (1, 3, 3, 9, 4, 2, 4, 1, 0.6),
    (2, 5, 6, 8, 3, 1, 64, 8, 0.2),
    (1, 3, 3, 9, 16, 4, 8, 3, 1.0),
    (1, 2, 4, 6, 0, 2, 4, 2, 1.0),
    (1, 9, 9, 7, 2, 3, 6, 2, 0.1),
]


def official_bucket(dy: int, dx: int, search_range: int) -> int:
    """The bias-table entry of offset (dy, dx) under bucketing="official", written from the
    authors' rule for the tests: the flat index (dy+s-1)*(2s-1)+(dx+s-1), or the last entry
    (2s-1)^2 when the flat index is outside [0, (2s-1)^2)."""
    side = 2 * search_range - 1
    flat = (dy + search_range - 1) * side + (dx + search_range - 1)
    return flat if 0 <= flat < side * side else side * side


def far_apart_groups(device, n=12, k=5):
    """tiles [n, 3] of two 4 x 6 tile grids (some rows invalid) and random nbr [n, k] in [-1, n):
    offsets of up to 3 rows and 5 columns, past the window of search_range 2 or 3."""
    tiles, _, _ = attention_selection(2, 4, 6, n, 0, device, unknown_fraction=0.6)
    return tiles, torch.randint(-1, n, (n, k), dtype=torch.int32, device=device)


def subprocess_env(**overrides) -> dict:
    """os.environ for a child Python process that imports the same fastmatte as this one (the
    installed package, or the checkout an editable install points at), with `overrides`."""
    where = str(Path(fastmatte.__file__).resolve().parents[1])
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [where, os.environ.get("PYTHONPATH")])),
            **overrides}


def randomize_running_statistics(model):
    """Every BatchNorm2d's running statistics made random (mean N(0, 0.1), variance U(0.5, 1.5)):
    a folded inference path then differs from the BatchNorm layers unless it folds them right."""
    with torch.no_grad():
        for bn in (m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)):
            bn.running_mean.normal_(0, 0.1)
            bn.running_var.uniform_(0.5, 1.5)
    return model


def check_inference_path_equals_eager_twin(model, tolerance=2e-4):
    """A zoo model's fused inference path (backend None) against its eager twin (backend "torch"),
    in eval mode with random BatchNorm statistics: every aux output on a [2, 3, 96, 160] batch and
    predict on a 75 x 130 photo (its recipe's resizes), max |difference| <= tolerance."""
    randomize_running_statistics(model.eval())
    with torch.no_grad():
        image = torch.rand(2, 3, 96, 160)
        eager = model(image, aux=True, backend="torch")
        fused = model(image, aux=True)
        photo = torch.rand(1, 3, 75, 130)
        pairs = [(fused[key], eager[key]) for key in eager]
        pairs.append((model.predict(photo), model.predict(photo, backend="torch")))
    for got, want in pairs:
        assert got.shape == want.shape
        assert (got - want).abs().max().item() <= tolerance
    return image

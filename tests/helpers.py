"""Shared test helpers: which (device, backend) pairs to run, and dtype tolerances."""
import pytest
import torch

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

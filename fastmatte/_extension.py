"""Loads the compiled extension fastmatte._C (which registers torch.ops.fastmatte.*).

A missing or broken extension is not fatal: every op falls back to its eager reference, and
this module warns once.
"""
import warnings

import torch

try:
    from fastmatte import _C  # noqa: F401  (importing it registers the operators)

    HAS_C = True
    LOAD_ERROR = None
except ImportError as error:  # pragma: no cover - exercised in a subprocess test
    HAS_C = False
    LOAD_ERROR = str(error)
    warnings.warn(
        f"fastmatte: the compiled extension fastmatte._C could not be loaded ({error}); every "
        "operator falls back to its eager PyTorch reference. Build it with "
        "`pip install --no-build-isolation -e .`.",
        RuntimeWarning,
        stacklevel=2,
    )


def has_kernel(op: str, dispatch_key: str) -> bool:
    """Whether torch.ops.fastmatte.<op> has a compiled kernel for `dispatch_key` ("CPU", "CUDA")."""
    return HAS_C and torch._C._dispatch_has_kernel_for_dispatch_key(f"fastmatte::{op}", dispatch_key)

"""Backend choice for every op: backend=None | "cpu" | "cuda" | "triton" | "torch".

Availability is decided once, at import, so that choosing a backend is plain Python that
torch.compile traces without graph breaks.
"""
import importlib.util
import os
import warnings

import torch

from fastmatte._extension import HAS_C, has_kernel

BACKENDS = ("cpu", "cuda", "triton", "torch")
# What every backend= argument takes, as errors say it: None, "cpu", "cuda", "triton" or "torch".
BACKEND_CHOICES = "None, " + ", ".join(f'"{name}"' for name in BACKENDS[:-1]) + f' or "{BACKENDS[-1]}"'

HAS_TRITON = importlib.util.find_spec("triton") is not None
# Under TRITON_INTERPRET=1 Triton kernels run on CPU tensors (slowly): tests use it, users don't.
TRITON_INTERPRETER = os.environ.get("TRITON_INTERPRET") == "1"

_warned = set()


def check_backend(owner: str, backend):
    """ValueError unless backend is None or one of BACKENDS. Models and layers call it on entry,
    so that a wrong name is blamed on their own argument, not on the first op they happen to run."""
    if backend is not None and not (isinstance(backend, str) and backend in BACKENDS):
        raise ValueError(f"{owner}: backend must be {BACKEND_CHOICES}, got {backend!r}")


class OpBackends:
    """The backends one op has. `triton` says whether the op ships a Triton kernel."""

    def __init__(self, op: str, triton: bool = False):
        self.op = op
        self.cpu = has_kernel(op, "CPU")
        self.cuda = has_kernel(op, "CUDA")
        self.triton = triton

    def why_not(self, backend: str, device: torch.device):
        """None if `backend` (one of BACKENDS) can run on `device`, else the reason it cannot."""
        if backend == "torch":
            return None
        if backend in ("cpu", "cuda") and device.type != backend:
            return f"backend {backend!r} needs {backend} tensors, got tensors on {device}"
        if backend == "cpu" and not self.cpu:
            return "the compiled extension fastmatte._C is not loaded (rebuild the package)"
        if backend == "cuda" and not self.cuda:
            if not has_kernel("select_tiles", "CUDA"):
                return "fastmatte was built without CUDA kernels (rebuild where torch has CUDA)"
            triton_hint = " (its GPU kernel is Triton: backend='triton')" if self.triton else ""
            return f"{self.op} has no CUDA C++ kernel{triton_hint}"
        if backend == "triton":
            if not self.triton:
                return f"{self.op} has no Triton kernel"
            if not HAS_TRITON:
                return "triton is not installed"
            if device.type != "cuda" and not (device.type == "cpu" and TRITON_INTERPRETER):
                return f"Triton kernels need CUDA tensors (or TRITON_INTERPRET=1 on CPU), got {device}"
            if not HAS_C:
                return "the Triton path uses fastmatte._C for its backward, which is not loaded"
        return None

    def resolve(self, device: torch.device, backend=None) -> str:
        """The backend to run: `backend` if it can run here (else ValueError), or the fastest."""
        if backend is not None:
            check_backend(f"fastmatte.{self.op}", backend)
            reason = self.why_not(backend, device)
            if reason is not None:
                raise ValueError(f"fastmatte.{self.op}: backend={backend!r} cannot run: {reason}")
            return backend
        for choice in ("cuda", "triton") if device.type == "cuda" else ("cpu",):
            if self.why_not(choice, device) is None:
                return choice
        if device.type == "cuda" and self.op not in _warned:
            _warned.add(self.op)
            warnings.warn(f"fastmatte.{self.op}: no compiled kernel for {device}; running the "
                          "eager PyTorch reference", RuntimeWarning, stacklevel=3)
        return "torch"

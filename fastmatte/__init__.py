"""fastmatte: fast, exact operators and models for real-time HD/4K alpha matting."""
import os as _os
import sys as _sys
from importlib.metadata import PackageNotFoundError, version as _version

# Big CPU tensors on transparent huge pages (torch's THP_MEM_ALLOC_ENABLE, read once, at torch's
# first allocation): every fresh multi-megabyte activation otherwise costs page faults on each
# call (MODNet at HD: 485 -> 370 ms a frame; its eager twin 695 -> 551). Only when fastmatte is
# imported before torch and the variable is unset; THP_MEM_ALLOC_ENABLE=0 opts out.
if "torch" not in _sys.modules:
    _os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")
CPU_HUGE_PAGES = _os.environ.get("THP_MEM_ALLOC_ENABLE") == "1"

import torch  # noqa: E402

from fastmatte._extension import HAS_C, LOAD_ERROR  # noqa: E402
from fastmatte import metrics, nn, ops, reference  # noqa: E402
from fastmatte import losses, models  # noqa: E402  (after ops and nn, which the models are built from)
from fastmatte.matter import Matter  # noqa: E402
from fastmatte.ops import TileSelection  # noqa: E402

try:
    __version__ = _version("fastmatte")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"


def info() -> dict:
    """Version, torch, which backends are present here, the ops whose compiled CUDA C++ kernels
    are registered (built, whether or not a GPU is present), the GPU name (None without one),
    whether big CPU tensors use transparent huge pages (CPU_HUGE_PAGES, above), and the names
    of the zoo's models (fastmatte.models.MODELS)."""
    from fastmatte.ops._backend import HAS_TRITON, TRITON_INTERPRETER
    from fastmatte._extension import has_kernel

    cuda_device = torch.cuda.is_available()
    return {
        "fastmatte": __version__,
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "backends": {
            "cpu": HAS_C,
            "cuda": cuda_device and has_kernel("select_tiles", "CUDA"),
            "triton": HAS_TRITON and (cuda_device or TRITON_INTERPRETER),
            "torch": True,
        },
        "cuda_kernels": sorted(name.split("::")[1] for name in
                               torch._C._dispatch_get_registrations_for_dispatch_key("CUDA")
                               if name.startswith("fastmatte::")),
        "extension_error": LOAD_ERROR,
        "gpu": torch.cuda.get_device_name() if cuda_device else None,
        "cpu_huge_pages": CPU_HUGE_PAGES,
        "models": list(models.MODELS),
    }


__all__ = ["Matter", "TileSelection", "info", "losses", "metrics", "models", "nn", "ops", "reference",
           "__version__"]

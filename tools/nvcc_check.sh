#!/usr/bin/env bash
# Compile every csrc/cuda/*.cu to an object file (no link, nothing run) against the installed
# torch's headers: on a machine without a CUDA torch this still proves the CUDA kernels parse,
# type-check and instantiate for sm_90. Usage: tools/nvcc_check.sh [file.cu ...]
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v nvcc >/dev/null; then echo "nvcc_check: nvcc not found, skipped"; exit 0; fi
includes=$(python -c "import torch.utils.cpp_extension as c; print(' '.join('-I' + p for p in c.include_paths()))")
python_include=$(python -c "import sysconfig; print(sysconfig.get_paths()['include'])")
out=$(mktemp -d)
files=("$@")
[ ${#files[@]} -gt 0 ] || files=(csrc/cuda/*.cu)
status=0
for cu in "${files[@]}"; do
  [ -e "$cu" ] || continue
  if nvcc -c -std=c++20 -arch=sm_90 -O1 -Xcompiler -w -Itools/nvcc_stubs -Icsrc $includes \
      -I"$python_include" -DFASTMATTE_WITH_CUDA "$cu" -o "$out/$(basename "$cu").o" 2>"$out/log"; then
    echo "nvcc_check: $cu compiles"
  else
    grep -v "warning" "$out/log" | head -40; echo "nvcc_check: $cu FAILED"; status=1
  fi
done
rm -rf "$out"
exit $status

#!/usr/bin/env bash
# `make cuda-build`: fastmatte built, linked and tested against a CUDA torch on a machine without a
# GPU, exactly as a user with an H100/H200 builds it (pip install --no-build-isolation, CUDAExtension,
# real nvcc, real link), so that what only a GPU can show is all that is left for the GPU.
#
#   1. a virtual environment outside the repository ($FASTMATTE_CACHE, default ~/.cache/fastmatte)
#      with torch $TORCH_VERSION for CUDA, taken from this machine's disk only (never downloaded:
#      it fails, saying so, when the wheel is not there); reused while it holds that torch;
#   2. the working tree copied to $CACHE/cuda-src (mtimes kept, so ninja rebuilds only what
#      changed) and installed there with TORCH_CUDA_ARCH_LIST=9.0, plus the test extras;
#   3. tools/cuda_build_check.py in that environment: every op with a CUDA C++ kernel has a CUDA
#      dispatch entry, fastmatte.info() lists them, the library holds sm_90 code, no kernel spills;
#      each kernel's registers / shared / local memory go to bench/results/cuda_resources.md;
#   4. the test suite against that torch, from outside the source tree (so the installed package
#      is what is tested): the CPU and Triton-interpreter tests run, the CUDA-only ones skip.
# CUDA_BUILD_TESTS=0 skips step 4. Takes MAX_JOBS (default: the number of cores).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
TORCH_VERSION=2.14.1
CACHE=${FASTMATTE_CACHE:-$HOME/.cache/fastmatte}
VENV=$CACHE/cuda-torch-$TORCH_VERSION
SRC=$CACHE/cuda-src
PY=$VENV/bin/python
export CUDA_HOME=${CUDA_HOME:-/usr/local/cuda}  # torch guesses /usr/local otherwise, and -lcudart fails
export TORCH_CUDA_ARCH_LIST=9.0 FASTMATTE_CUDA=1 MAX_JOBS=${MAX_JOBS:-$(nproc)}
started=$SECONDS
say() { echo "cuda-build: $*"; }
pip_install() {  # pip install, without the warning per package that a local index lacks
    "$PY" -m pip install -q "$@" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
}

if ! "$PY" -c "import sys, torch; sys.exit(torch.__version__.split('+')[0] != '$TORCH_VERSION' \
        or torch.version.cuda is None)" 2>/dev/null; then
    say "creating $VENV with torch $TORCH_VERSION (CUDA) from this machine's disk"
    # pip's configured local indexes and wheel folders (file:// or plain paths), as --find-links
    mapfile -t local_sources < <(python3 - <<'EOF'
import os, subprocess
out = subprocess.run(["python3", "-m", "pip", "config", "list"], capture_output=True, text=True).stdout
for line in out.splitlines():
    key, _, value = line.partition("=")
    if key.split(".")[-1] in ("index-url", "extra-index-url", "find-links"):
        for item in value.strip("'\"").split():
            path = item[len("file://"):] if item.startswith("file://") else item
            if os.path.isdir(os.path.join(path, "torch")):
                print(os.path.join(path, "torch"))
            elif os.path.isdir(path):
                print(path)
EOF
    )
    links=()
    for source in "${local_sources[@]}"; do links+=(--find-links "$source"); done
    rm -rf "$VENV"
    python3 -m venv "$VENV"
    if ! pip_install --no-index --no-deps "${links[@]}" "torch==$TORCH_VERSION"; then
        rm -rf "$VENV"
        say "torch $TORCH_VERSION is not on this machine's disk (looked in: ${local_sources[*]:-nothing}); a" \
            "CUDA torch is several GB, so it is not downloaded: put its wheel in a local pip index" >&2
        exit 1
    fi
    pip_install "torch==$TORCH_VERSION" ninja wheel numpy  # torch's own dependencies; torch stays
fi
say "torch $("$PY" -c 'import torch; print(torch.__version__, "CUDA", torch.version.cuda)') in $VENV"

# The working tree's files (tracked, and untracked but not ignored) mirrored into $SRC with their
# mtimes, so that the build there is incremental; files gone from the tree go from $SRC too.
git ls-files -co --exclude-standard -z | python3 -c '
import os, shutil, sys
src = sys.argv[1]
wanted = {name for name in sys.stdin.read().split("\0") if name and os.path.isfile(name)}
for name in wanted:
    target = os.path.join(src, name)
    if not os.path.exists(target) or os.stat(target).st_mtime_ns != os.stat(name).st_mtime_ns:
        os.makedirs(os.path.dirname(target) or ".", exist_ok=True)
        shutil.copy2(name, target)
for folder, dirs, files in os.walk(src):
    dirs[:] = [d for d in dirs if not (folder == src and (d == "build" or d.endswith(".egg-info")))]
    for file in files:
        name = os.path.relpath(os.path.join(folder, file), src)
        if name not in wanted:
            os.remove(os.path.join(folder, file))
' "$SRC"
say "building in $SRC (sm_90, MAX_JOBS=$MAX_JOBS)"
build_started=$SECONDS
(cd "$SRC" && pip_install --no-build-isolation ".[test]")
say "built and installed in $((SECONDS - build_started)) s"

cd /tmp  # from here on `import fastmatte` is the installed package, never the source tree
"$PY" "$ROOT/tools/cuda_build_check.py" "$ROOT/csrc/cuda" "$ROOT/bench/results/cuda_resources.md"
if [[ "${CUDA_BUILD_TESTS:-1}" != 0 ]]; then
    tests_started=$SECONDS
    "$PY" -m pytest "$ROOT/tests" -q -p no:cacheprovider -x
    say "test suite against torch $TORCH_VERSION passed in $((SECONDS - tests_started)) s"
fi
say "done in $((SECONDS - started)) s"

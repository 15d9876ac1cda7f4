#!/usr/bin/env bash
# Everything a GPU session owes, in stages that each fit one device call (10 minutes):
#   tools/gpu_session.sh build      compile fastmatte._C with the CUDA kernels for sm_90 (H100/H200)
#   tools/gpu_session.sh test       the test suite (CUDA and Triton tests run instead of skipping)
#   tools/gpu_session.sh sanitize   compute-sanitizer memcheck + racecheck over the CUDA op tests
#   tools/gpu_session.sh bench      operator and model benchmarks, fp16, HD and 4K, with torch.compile
#   tools/gpu_session.sh all        all four in order (more than one 10-minute call: split it)
# Results (JSON, PNG charts, Markdown tables, logs) go to $OUT/results when $OUT is set (the
# device tool's output folder), else to bench/results; commit them from there.
set -uo pipefail
cd "$(dirname "$0")/.."
RESULTS="${OUT:+$OUT/results}"
RESULTS="${RESULTS:-bench/results}"
mkdir -p "$RESULTS"
PYTHON="${PYTHON:-python3}"
status=0

run() {  # run NAME COMMAND...: log to $RESULTS/NAME.log, remember a failure, keep going
    local name=$1
    shift
    echo "== $name: $*"
    if ! "$@" > >(tee "$RESULTS/$name.log") 2>&1; then
        echo "!! $name failed"
        status=1
    fi
}

build() {
    run build env TORCH_CUDA_ARCH_LIST=9.0 MAX_JOBS=16 "$PYTHON" -m pip install --no-build-isolation \
        --no-deps -e .  # offline machine: its image already has the test dependencies
    run info "$PYTHON" -m fastmatte info
}

tests() {
    run tests timeout 540 "$PYTHON" -m pytest tests -q -x --junitxml="$RESULTS/tests.xml"
}

sanitize() {
    local cuda_tests=(tests/test_select_tiles.py tests/test_gather_tiles.py tests/test_scatter_tiles.py
                      tests/test_knn_tiles.py tests/test_gated_conv.py tests/test_trimap_fusion.py
                      tests/test_metrics_ops.py)
    for tool in memcheck racecheck; do
        run "sanitize_$tool" timeout 270 compute-sanitizer --tool "$tool" --error-exitcode 1 \
            "$PYTHON" -m pytest "${cuda_tests[@]}" -q -x -m cuda -k "not compile and not opcheck"
    done
}

bench() {
    local commit
    commit=$(git rev-parse --short HEAD)
    run bench_ops "$PYTHON" -m fastmatte bench --device cuda --res hd,4k --precision fp16 --compile \
        --json "$RESULTS/ops_cuda_fp16_$commit.json"
    run bench_metrics "$PYTHON" -m fastmatte bench --device cuda --res hd,4k --suite metrics \
        --json "$RESULTS/metrics_cuda_$commit.json"
    run bench_model "$PYTHON" -m fastmatte bench --model cra --device cuda --res hd,4k --precision fp16 \
        --compile --profile --out "$RESULTS"
}

case "${1:-all}" in
    build) build ;;
    test) tests ;;
    sanitize) sanitize ;;
    bench) bench ;;
    all) build && tests && sanitize && bench ;;
    *) echo "usage: $0 build|test|sanitize|bench|all" >&2; exit 2 ;;
esac
exit $status

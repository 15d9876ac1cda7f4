#!/usr/bin/env bash
# Everything a GPU session owes, as one device call that keeps to a deadline:
#
#   tools/gpu_session.sh                 every stage not yet done, in order, until the deadline
#   tools/gpu_session.sh STAGE...        just these stages, done or not
#   tools/gpu_session.sh fresh [STAGE...]  forget earlier calls' results first
#
# Stages, most needed first: build (fastmatte._C with the CUDA kernels for sm_90), tests (the
# whole suite; CUDA and Triton tests run instead of skipping), bench_model (CRA end to end, fp16,
# HD and 4K, vs eager and a CUDA graph, profiled), bench_ops (every operator case, fp16, HD and
# 4K, vs eager, with GB/s over the device-copy floor), sanitize (compute-sanitizer memcheck and
# racecheck over the CUDA op tests), bench_metrics, then the torch.compile comparisons, last
# because compiling every reference takes minutes: bench_model_compile (into compile/) and
# bench_ops_compile (4K).
#
# A stage starts only with at least MIN_START seconds left before the deadline (GPU_SESSION_SECONDS
# after the start, default 540: a 600 s device call with room to pack up) and is cut at its cap or
# at the deadline. Finished stages are remembered under build/gpu_session/ (kept while the device
# machine stays warm), so calling again straight away resumes with the rest. Every call ends by
# writing $OUT/summary.md (stage, status, seconds, last line) and $OUT/gpu_results.tgz (all logs,
# JSON, Markdown tables, charts and profiles so far); without $OUT they stay in build/gpu_session/.
# Unpack the archive into bench/results/ and commit the records and tables.
set -uo pipefail
cd "$(dirname "$0")/.."
START=$SECONDS
DEADLINE=$((START + ${GPU_SESSION_SECONDS:-540}))
MIN_START=45
STATE=build/gpu_session
RESULTS=$STATE/results
PYTHON="${PYTHON:-python3}"
STAGES=(build tests bench_model bench_ops sanitize bench_metrics bench_model_compile bench_ops_compile)
declare -A CAP=([build]=300 [tests]=240 [bench_model]=150 [bench_ops]=150 [sanitize]=180 [bench_metrics]=90
                [bench_model_compile]=300 [bench_ops_compile]=300)

if [[ "${1:-}" == fresh ]]; then
    rm -rf "$STATE"
    shift
fi
mkdir -p "$RESULTS"
for stage in "$@"; do
    [[ -n "${CAP[$stage]:-}" ]] || { echo "usage: $0 [fresh] [${STAGES[*]}]" >&2; exit 2; }
done

run_stage() {  # run_stage NAME: run stage_NAME under its time limit, log it, record the outcome
    local name=$1 left=$((DEADLINE - SECONDS)) started=$SECONDS rc
    if ((left < MIN_START)); then
        echo "== $name: skipped, ${left}s left before the deadline"
        return 1
    fi
    LIMIT=$((left < CAP[$name] ? left : CAP[$name]))
    echo "== $name (at most ${LIMIT}s)"
    "stage_$name" 2>&1 | tee "$RESULTS/$name.log"
    rc=${PIPESTATUS[0]}
    local status=passed
    ((rc == 124 || rc == 137)) && status="cut at ${LIMIT}s"
    ((rc != 0 && rc != 124 && rc != 137)) && status="failed (exit $rc)"
    printf '%s\t%s\t%s\n' "$status" "$((SECONDS - started))" \
        "$(grep -v '^\s*$' "$RESULTS/$name.log" | tail -n 1 | cut -c1-200)" > "$STATE/$name.done"
    echo "== $name: $status after $((SECONDS - started))s"
    [[ $status == passed ]]
}

stage_build() {
    timeout "$LIMIT" env TORCH_CUDA_ARCH_LIST=9.0 MAX_JOBS=16 "$PYTHON" -m pip install --no-build-isolation \
        --no-deps -e . && "$PYTHON" -m fastmatte info  # offline: the image has the dependencies
}

stage_tests() {
    local parallel=()
    "$PYTHON" -c "import xdist" 2>/dev/null && parallel=(-n 8)
    timeout "$LIMIT" "$PYTHON" -m pytest tests -q -p no:cacheprovider "${parallel[@]}" \
        --junitxml="$RESULTS/tests.xml"
}

stage_bench_model() {
    timeout "$LIMIT" "$PYTHON" -m fastmatte bench --model cra --device cuda --res hd,4k --precision fp16 \
        --no-compile --profile --out "$RESULTS"
}

stage_bench_model_compile() {
    timeout "$LIMIT" "$PYTHON" -m fastmatte bench --model cra --device cuda --res hd,4k --precision fp16 \
        --compile --out "$RESULTS/compile"
}

stage_bench_ops() {
    timeout "$LIMIT" "$PYTHON" -m fastmatte bench --device cuda --res hd,4k --precision fp16 --no-compile \
        --repeats 50 --json "$RESULTS/ops_cuda_fp16.json"
}

stage_bench_ops_compile() {
    timeout "$LIMIT" "$PYTHON" -m fastmatte bench --device cuda --res 4k --precision fp16 --compile \
        --repeats 50 --json "$RESULTS/ops_cuda_fp16_4k_compile.json"
}

stage_sanitize() {  # the CUDA C++ kernels' tests; each tool gets half the stage's time
    local tool rc=0 tests=(tests/test_select_tiles.py tests/test_gather_tiles.py tests/test_scatter_tiles.py
                           tests/test_knn_tiles.py)
    for tool in memcheck racecheck; do
        echo "-- compute-sanitizer --tool $tool"
        timeout $((LIMIT / 2)) compute-sanitizer --tool "$tool" --error-exitcode 1 \
            "$PYTHON" -m pytest "${tests[@]}" -q -p no:cacheprovider -m cuda \
            -k "not compile and not opcheck" \
            || rc=$?
    done
    return $rc
}

stage_bench_metrics() {
    timeout "$LIMIT" "$PYTHON" -m fastmatte bench --device cuda --res hd,4k --suite metrics \
        --json "$RESULTS/metrics_cuda.json"
}

pack_up() {
    local commit dirty summary=$STATE/summary.md
    commit=$(git rev-parse --short HEAD 2>/dev/null)
    git diff --quiet HEAD 2>/dev/null || dirty=" (+ local changes)"
    {
        echo "# GPU session: commit ${commit:-unknown}${dirty:-}"
        echo
        nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null \
            | sed 's/^/GPU: /'
        "$PYTHON" -c "import torch, triton; print('torch', torch.__version__, '| triton', triton.__version__)" \
            2>&1
        echo
        echo "| stage | status | seconds | last line |"
        echo "| --- | --- | ---: | --- |"
        for stage in "${STAGES[@]}"; do
            if [[ -f "$STATE/$stage.done" ]]; then
                IFS=$'\t' read -r status secs last < "$STATE/$stage.done"
                echo "| $stage | $status | $secs | ${last//|/\\|} |"
            else
                echo "| $stage | not run yet | | |"
            fi
        done
    } > "$summary"
    cp "$summary" "$RESULTS/summary.md"
    cat "$summary"
    if [[ -n "${OUT:-}" ]]; then
        cp "$summary" "$OUT/summary.md"
        tar czf "$OUT/gpu_results.tgz" -C "$STATE" results
    fi
}

failed=0
if (($# == 0)); then
    for stage in "${STAGES[@]}"; do
        [[ -f "$STATE/$stage.done" ]] && continue
        run_stage "$stage" || failed=1
        [[ $stage == build && $failed == 1 ]] && break  # nothing else can run without the build
    done
else
    for stage in "$@"; do
        run_stage "$stage" || failed=1
    done
fi
pack_up
exit $failed

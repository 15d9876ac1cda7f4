#!/usr/bin/env bash
# Everything a GPU session owes, as ONE device call of at most 540 s (give the call timeout_s 570):
# a lent machine has 15 minutes in all, its start (1-2 min) included, so this leaves room for one
# short rerun.
#
#   tools/gpu_session.sh                   every stage not yet done, in order, until the deadline
#   tools/gpu_session.sh STAGE...          just these stages, done or not
#   tools/gpu_session.sh fresh [STAGE...]  forget earlier calls' results first
#   GPU_SESSION_DRY=1 tools/gpu_session.sh fresh   the same script on the CPU (CI runs this): no
#                                          build, no CUDA stages, tiny sizes; proves the plumbing
#
# Stages in value order, each with its own cap (seconds), and how the cap was estimated:
#   build         130  sm_90 only, MAX_JOBS=16: here (2 cores) the 4 .cu files take 40-70 s each and
#                      the 13 .cpp files 20-60 s each; 16 cores compile them side by side (~1.5 min)
#   tests_ops     100  CUDA and Triton tests of the ops on the GPU, 8 workers: ~540 CUDA tests and
#                      ~730 Triton kernel variants to JIT-compile (~1 s each, spread over 8 workers)
#   tests_models   50  CUDA tests of the models, Matter (CUDA graphs, pinned uploads), Swin
#   sanitize       30  compute-sanitizer memcheck over a few parametrizations of the CUDA C++ ops
#   bench_models  170  every zoo model (cra, e2ehim, modnet, ppmatting, ppmattingv2, rvm), fp16, batch 1, HD and
#                      4K: fastmatte, the eager twin, the CUDA graph and torch.compile (compiling a model at
#                      two sizes: ~30-60 s; a model cut short still records what it measured);
#                      RVM's and MODNet's onnxruntime backends are fp32 only, recorded as skipped
#   bench_ops      50  every op case, fp16, HD and 4K, 30 runs, with the bandwidth floor ratios
# The caps add up to 530 s; the script refuses to start if they exceed BUDGET (540). A stage starts
# only with at least MIN_START s left and is cut at its cap or at the deadline. Every stage writes
# its results as it finishes, and $OUT (summary.md + gpu_results.tgz: logs, JSON, Markdown tables,
# charts, profiles) is refreshed after every stage, so a cut run still returns what it measured.
# Finished stages are remembered under build/gpu_session/ (while the machine stays warm): calling
# again resumes with the rest. Unpack gpu_results.tgz into bench/results/ and commit it.
#
# RVM's released weights: the GPU machine cannot download them. Carry them in: before the device
# call, `mkdir -p build/fastmatte-cache/weights && cp ~/.cache/fastmatte/weights/rvm_mobilenetv3.safetensors
# build/fastmatte-cache/weights/` and give the call carry=["build/fastmatte-cache"]; without them
# RVM is benchmarked on random weights (the same speed; the records say which).
set -uo pipefail
cd "$(dirname "$0")/.."
if [[ -d build/fastmatte-cache ]]; then
    export FASTMATTE_CACHE="$PWD/build/fastmatte-cache"
fi
BUDGET=540
START=$SECONDS
DEADLINE=$((START + ${GPU_SESSION_SECONDS:-$BUDGET}))
MIN_START=20
STATE=build/gpu_session
RESULTS=$STATE/results
PYTHON="${PYTHON:-python3}"
DRY=${GPU_SESSION_DRY:-0}
STAGES=(build tests_ops tests_models sanitize bench_models bench_ops)
declare -A CAP=([build]=130 [tests_ops]=100 [tests_models]=50 [sanitize]=30 [bench_models]=170 [bench_ops]=50)
OP_TESTS=(tests/test_select_tiles.py tests/test_gather_tiles.py tests/test_scatter_tiles.py
          tests/test_knn_tiles.py tests/test_tile_pipeline.py tests/test_knn_attention.py
          tests/test_group_attention.py tests/test_window_attention.py tests/test_gated_conv.py
          tests/test_trimap_fusion.py tests/test_guided_upsample.py tests/test_ibnorm.py tests/test_resize_concat.py
          tests/test_area_resize.py tests/test_metrics_ops.py tests/test_metrics.py)
MODEL_TESTS=(tests/test_cra.py tests/test_cra_model.py tests/test_swin.py tests/test_matter.py tests/test_model_bench.py
             tests/test_cross_region_attention.py tests/test_rvm.py tests/test_matter_video.py
             tests/test_modnet.py tests/test_modnet_training.py tests/test_ppmatting.py
             tests/test_ppmattingv2.py tests/test_ppmatting_training.py tests/test_e2ehim.py
             tests/test_matter_instances.py)

total=0
for stage in "${STAGES[@]}"; do total=$((total + CAP[$stage])); done
if ((total > BUDGET)); then
    echo "gpu_session: the stage caps add up to ${total}s, over the ${BUDGET}s budget" >&2
    exit 2
fi
if [[ "${1:-}" == fresh ]]; then
    rm -rf "$STATE"
    shift
fi
mkdir -p "$RESULTS"
for stage in "$@"; do
    [[ -n "${CAP[$stage]:-}" ]] || { echo "usage: $0 [fresh] [${STAGES[*]}]" >&2; exit 2; }
done
if [[ $DRY == 1 ]]; then
    DEVICE=cpu PRECISION=fp32 MODEL_ARGS=(--res 64x96 --repeats 2)
    OP_ARGS=(--res hd --suite tiles --ops select_tiles --repeats 2)
    PYTEST_WORKERS=()
else
    DEVICE=cuda PRECISION=fp16 MODEL_ARGS=(--res hd,4k) OP_ARGS=(--res hd,4k --repeats 30)
    PYTEST_WORKERS=(-n 8)
fi

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
    pack_up > /dev/null
    [[ $status == passed ]]
}

stage_build() {
    if [[ $DRY == 1 ]]; then  # the extension this checkout was set up with
        timeout "$LIMIT" "$PYTHON" -m fastmatte info
        return
    fi
    timeout "$LIMIT" env TORCH_CUDA_ARCH_LIST=9.0 MAX_JOBS=16 "$PYTHON" -m pip install --no-build-isolation \
        --no-deps -e . && "$PYTHON" -m fastmatte info  # offline: the image has the dependencies
}

run_tests() {  # run_tests FILE...: the CUDA and Triton tests of FILEs (on the CPU: collected only)
    local how=()
    [[ $DRY == 1 ]] && how=(--collect-only)
    timeout "$LIMIT" "$PYTHON" -m pytest "$@" -q -p no:cacheprovider -m "cuda or triton" "${how[@]}" \
        "${PYTEST_WORKERS[@]}" --junitxml="$RESULTS/$STAGE_NAME.xml"
}

stage_tests_ops() {
    STAGE_NAME=tests_ops run_tests "${OP_TESTS[@]}"
}

stage_tests_models() {
    STAGE_NAME=tests_models run_tests "${MODEL_TESTS[@]}"
}

stage_sanitize() {  # the CUDA C++ ops' reference comparisons under memcheck (on the CPU: collected)
    local sanitizer=(compute-sanitizer --tool memcheck --error-exitcode 1) how=()
    [[ $DRY == 1 ]] && sanitizer=() how=(--collect-only)
    timeout "$LIMIT" "${sanitizer[@]}" "$PYTHON" -m pytest tests/test_select_tiles.py tests/test_gather_tiles.py \
        tests/test_scatter_tiles.py tests/test_knn_tiles.py -q -p no:cacheprovider -m cuda \
        -k "matches_reference and not triton" "${how[@]}"
}

stage_bench_models() {  # every model of the zoo
    local model rc=0 models
    models=$("$PYTHON" -c "import fastmatte.models as m; print(' '.join(m.MODELS))") || return 1
    for model in $models; do
        local left=$((LIMIT - (SECONDS - STAGE_START)))
        ((left > 0)) || return 124
        echo "-- $model"
        timeout "$left" "$PYTHON" -m fastmatte bench --model "$model" --device "$DEVICE" --precision "$PRECISION" \
            "${MODEL_ARGS[@]}" --profile --force --out "$RESULTS" || rc=$?
    done
    return $rc
}

stage_bench_ops() {
    timeout "$LIMIT" "$PYTHON" -m fastmatte bench --device "$DEVICE" --precision "$PRECISION" --no-compile \
        "${OP_ARGS[@]}" --force --json "$RESULTS/ops_${DEVICE}_${PRECISION}.json"
}

pack_up() {
    local commit dirty summary=$STATE/summary.md
    commit=$(git rev-parse --short HEAD 2>/dev/null)
    git diff --quiet HEAD 2>/dev/null || dirty=" (+ local changes)"
    {
        echo "# GPU session: commit ${commit:-unknown}${dirty:-}$([[ $DRY == 1 ]] && echo ' (DRY RUN on the CPU)')"
        echo
        nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null \
            | sed 's/^/GPU: /'
        "$PYTHON" -c "import torch, triton; print('torch', torch.__version__, '| triton', triton.__version__)" \
            2>&1
        echo
        echo "| stage | cap s | status | seconds | last line |"
        echo "| --- | ---: | --- | ---: | --- |"
        for stage in "${STAGES[@]}"; do
            if [[ -f "$STATE/$stage.done" ]]; then
                IFS=$'\t' read -r status secs last < "$STATE/$stage.done"
                echo "| $stage | ${CAP[$stage]} | $status | $secs | ${last//|/\\|} |"
            else
                echo "| $stage | ${CAP[$stage]} | not run yet | | |"
            fi
        done
    } > "$summary"
    cp "$summary" "$RESULTS/summary.md"
    if [[ -n "${OUT:-}" ]]; then
        cp "$summary" "$OUT/summary.md"
        tar czf "$OUT/gpu_results.tgz" -C "$STATE" results
    fi
    cat "$summary"
}

failed=0
if (($# == 0)); then
    for stage in "${STAGES[@]}"; do
        [[ -f "$STATE/$stage.done" ]] && continue
        STAGE_START=$SECONDS run_stage "$stage" || failed=1
        [[ $stage == build && $failed == 1 ]] && break  # nothing else can run without the build
    done
else
    for stage in "$@"; do
        STAGE_START=$SECONDS run_stage "$stage" || failed=1
    done
fi
pack_up
exit $failed

"""End-to-end frames per second of a whole matting model: fastmatte vs the same model with
backend="torch" (eager), vs torch.compile of that eager model and vs whatever other deployment
the model's workload adds (RVM: onnxruntime running its released ONNX file; MODNet: onnxruntime
running an ONNX export of its eager network), batch 1, tensor in, alpha out.

What each model is given, and which backends it has, is its workload
(fastmatte.bench.workloads): CRA a fixed photo and trimap with random weights, RVM a clip of a
real photo with its state carried from call to call. Every backend's alpha is compared with the
eager model's first, over the workload's first frames, then all are timed taking turns.

Precision: fp16/bf16 mean the model's parameters and the image are in that dtype
(`model.to(dtype)`), as a deployment runs it, not autocast: autocast would leave the
fastmatte ops' inputs in whatever dtype each preceding layer produced and time the casts.
"""
import statistics
import time
from typing import Callable

import torch

from fastmatte.bench.cases import RESOLUTIONS
from fastmatte.bench.profiling import model_stages, profile_summary
from fastmatte.bench.timing import device_name, git_commit, median_ms, synchronize
from fastmatte.bench.workloads import WORKLOADS, workload
from fastmatte.bench.workloads.base import max_abs_diff
from fastmatte.matter import PRECISIONS

DEFAULT_REPEATS = {"cpu": 10, "cuda": 100}  # timed calls per figure, by device type
MIN_SIZE = 64  # the smallest frame side: fastmatte.sample_portrait's
PROFILED = ("fastmatte", "eager")  # the backends --profile breaks down stage by stage
# Backends whose failure to run is a result to record, not a crash; their output still has to
# match, except torch.compile's (a wrong compiled graph is torch's bug, recorded as its error).
OPTIONAL = ("compile", "cuda-graph", "onnxruntime")
WHO = {"compile": "torch.compile", "cuda-graph": "the CUDA graph of fastmatte",
       "onnxruntime": "onnxruntime"}


class OutputMismatch(RuntimeError):
    """A backend's alpha differs from the eager model's beyond the tolerance."""


def check_arguments(model_name, resolutions, device, precision, names=None):
    """Raise ValueError naming the argument when a benchmark cannot run as asked: a model
    without a workload, an unknown resolution, a missing GPU, fp16/bf16 on the CPU. `names`
    maps the parameter names to what the caller calls them (the command line's options)."""
    name = {p: p for p in ("model_name", "resolutions", "device", "precision")} | (names or {})
    if model_name not in WORKLOADS:
        raise ValueError(f"{name['model_name']} must be one of {', '.join(WORKLOADS)}; got {model_name!r}")
    if not resolutions:
        raise ValueError(f"{name['resolutions']} is empty: give at least one resolution")
    for res in resolutions:
        if not (_is_size(res) or isinstance(res, str) and res in RESOLUTIONS):
            raise ValueError(f"{name['resolutions']} must hold names among {', '.join(RESOLUTIONS)} or "
                             f"(height, width) pairs of ints >= {MIN_SIZE}; got {res!r}")
    device = torch.device(device)
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"{name['device']} must be cpu or cuda; got {str(device)!r}")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"{name['device']} cuda, but no CUDA GPU is available")
    if precision not in PRECISIONS:
        raise ValueError(f"{name['precision']} must be one of {', '.join(PRECISIONS)}; got {precision!r}")
    if device.type == "cpu" and precision != "fp32":
        raise ValueError(f"{name['precision']} {precision} needs a CUDA device: on the CPU the model runs in "
                         f"fp32 only")


def parse_resolutions(text: str, option="resolutions") -> list:
    """"hd,4k,64x96" -> ["hd", "4k", (64, 96)]: names of RESOLUTIONS or HEIGHTxWIDTH sizes (ints
    >= MIN_SIZE). ValueError naming `option` for anything else."""
    parsed = []
    for item in text.split(","):
        size = item.lower().split("x")
        if item in RESOLUTIONS:
            parsed.append(item)
        elif len(size) == 2 and all(n.isascii() and n.isdigit() for n in size) \
                and min(map(int, size)) >= MIN_SIZE:
            parsed.append((int(size[0]), int(size[1])))
        else:
            raise ValueError(f"{option} must be a comma list of {', '.join(RESOLUTIONS)} or HEIGHTxWIDTH "
                             f"sizes of at least {MIN_SIZE} pixels (e.g. 64x96); got {item!r}")
    return parsed


def _is_size(res) -> bool:
    return (isinstance(res, (tuple, list)) and len(res) == 2
            and all(isinstance(n, int) and not isinstance(n, bool) and n >= MIN_SIZE for n in res))


def frame_size(resolution) -> tuple[int, int, str]:
    """(height, width, label) of "hd" (1080 x 1920), "4k" (2160 x 3840) or an explicit (H, W),
    whose label is "HxW"."""
    if _is_size(resolution):
        return resolution[0], resolution[1], f"{resolution[0]}x{resolution[1]}"
    height, width = RESOLUTIONS[resolution]
    return height, width, resolution


def model_benchmark(model_name="cra", resolutions=("hd",), device=None, precision="fp32",
                    repeats=None, compile=None, profile=False, model_kwargs=None, *,
                    model=None, tolerance=None) -> list[dict]:
    """Frames per second of the model at each resolution, batch 1, per backend of its workload.

    resolutions: names ("hd", "4k") or explicit (height, width) pairs (labelled "HxW").
    device: "cpu" / "cuda" / torch.device, default cuda if present. precision: fp32, or on
    CUDA fp16/bf16 (the model and the image in that dtype). repeats: timed calls per figure
    (default DEFAULT_REPEATS of the device type), the backends taking turns (interleaved_ms:
    fewer, at least 5, once 10 s per backend are spent), after a check of each backend's output
    (check_backend) and a warm-up. compile: also time torch.compile of the eager model (default:
    on CUDA yes, on the CPU no). A backend in OPTIONAL that cannot run (a compilation error, a
    failed capture, onnxruntime missing) is recorded with its "error", not raised.
    profile: attach profile_summary of the fastmatte and the eager backend (top ops, and the
    time in each of model_stages) to their records (key "profile").
    model_kwargs: passed to build_model (or load_model); model: a ready module to time instead
    (moved to the device and dtype in place); its records are still labelled model_name.
    tolerance: largest accepted max |alpha - eager alpha|, for every backend (default: the
    workload's, fastmatte.bench.workloads.base.DIFF_TOLERANCE[precision] for most).

    Returns one record per (resolution, backend): model, resolution, height, width, backend,
    precision, fps_median, ms_median, max_abs_diff_vs_eager (the largest over the checked
    frames), error (None, or why the backend has no figure), device, torch, commit,
    model_kwargs, and the workload's figures (CRA: tiles, capacity; RVM: downsample_ratio,
    weights, clip, onnxruntime). Raises OutputMismatch when a backend's alpha is off (but
    torch.compile's), and the workload's errors when the model cannot be made (e.g. WeightsError
    for a damaged weights file).
    """
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    check_arguments(model_name, resolutions, device, precision)
    compile = device.type == "cuda" if compile is None else compile
    repeats = repeats or DEFAULT_REPEATS[device.type]
    dtype = PRECISIONS[precision]
    work = workload(model_name)
    common = dict(model=model_name, precision=precision, device=device_name(device), torch=torch.__version__,
                  commit=git_commit(), model_kwargs=dict(model_kwargs or {}))
    records = []
    with torch.inference_mode():
        model = work.prepare(device, dtype, model_kwargs, model)
        for res in resolutions:
            height, width, label = frame_size(res)
            inputs = work.inputs(height, width, device, dtype)
            frame = dict(common, resolution=label, height=height, width=width, **work.figures(inputs))
            backends = work.backends(device, compile)
            runs = {backend: work.runner(model, backend, inputs) for backend in backends}
            reference = reference_alphas(runs["eager"], work.check_frames)
            checked = {}
            for backend, run in runs.items():
                limit = work.tolerance(backend, precision) if tolerance is None else tolerance
                checked[backend] = check_backend(run, backend, reference, device, limit, label,
                                                 work.difference)
            ready = {backend: runs[backend] for backend, (figures, _) in checked.items()
                     if not figures["error"]}
            for backend, ms in interleaved_ms(ready, device, repeats).items():
                figures, out = checked[backend]
                figures.update(ms_median=ms, fps_median=1e3 / ms, **work.output_figures(out))
            group = [{**frame, "backend": backend, **dict.fromkeys(work.output_keys), **figures}
                     for backend, (figures, _) in checked.items()]
            if profile:  # stage by stage: what the fastmatte ops save
                for record in group:
                    if record["backend"] in PROFILED:
                        record["profile"] = profile_summary(runs[record["backend"]], device,
                                                            stages=model_stages(model))
            records += group
    return records


def reference_alphas(run, frames) -> list:
    """The alphas of run()'s first `frames` calls from the start of its clip (the eager model's:
    what every backend is compared with)."""
    run.reset()
    return [run()["alpha"] for _ in range(frames)]


def check_backend(run, backend, reference, device, tolerance, label, difference=None) -> tuple[dict, dict]:
    """Run `run` (a workload's Runner) from the start of its clip for as many calls as
    `reference` holds alphas (the first call compiles the "compile" backend, captures the
    "cuda-graph" one, opens onnxruntime's session), compare each alpha with the reference's,
    then warm it up (the clip going on). Returns (figures, last output): figures =
    fps_median and ms_median (None until timed), max_abs_diff_vs_eager and error = None, or
    for a backend in OPTIONAL why it cannot be timed (any exception: a result to report, not
    a crash). Raises OutputMismatch when an alpha is more than `tolerance` off, but for
    torch.compile, whose mismatch is recorded as its error. difference(alpha, reference) -> float
    measures "off" (default max_abs_diff; a workload's Workload.difference)."""
    difference = difference or max_abs_diff
    figures = dict(fps_median=None, ms_median=None, max_abs_diff_vs_eager=None, error=None)
    try:
        run.reset()
        diffs = []
        for index, expected in enumerate(reference):
            out = run()
            diffs.append(difference(out["alpha"], expected))
            if not diffs[-1] <= tolerance:  # NaN fails too
                at = f" (frame {index + 1} of the clip, the state carried)" if len(reference) > 1 else ""
                raise OutputMismatch(f"{WHO.get(backend, 'fastmatte')} output does not match the eager model "
                                     f"at {label}{at}: max |alpha - eager alpha| = {diffs[-1]:.3g} > "
                                     f"tolerance {tolerance:g}")
        figures["max_abs_diff_vs_eager"] = max(diffs)
        warm_up(run, device)
    except Exception as error:
        # compile's failures are torch's; a graph or a runtime that computes something else is not
        mismatch = isinstance(error, OutputMismatch) and backend != "compile"
        if backend not in OPTIONAL or mismatch:
            raise
        figures["error"] = f"{type(error).__name__}: {error}".splitlines()[0][:500]
        return figures, None
    return figures, out


def interleaved_ms(runs: dict[str, Callable], device, repeats, budget_s=10.0) -> dict[str, float]:
    """Median milliseconds of each run() (median_ms of single calls), the backends taking turns
    call by call: a neighbour's load on a shared machine then slows them all alike instead of
    whichever was being timed. `repeats` rounds, or fewer (at least 5) once the rounds have
    taken budget_s seconds per backend."""
    device, times = torch.device(device), {backend: [] for backend in runs}
    start = time.perf_counter()
    for done in range(repeats):
        if done >= 5 and time.perf_counter() - start > budget_s * len(runs):
            break
        for backend, run in runs.items():
            times[backend].append(median_ms(run, device, repeats=1, warmup=0))
    return {backend: statistics.median(ms) for backend, ms in times.items()}


def warm_up(run, device, min_calls=2, max_calls=30, budget_s=1.5):
    """Call run() for `budget_s` seconds (at least min_calls, at most max_calls times): a fresh
    process's first frames touch new memory and build kernel caches, and at HD on a CPU that
    lasts longer than a fixed two calls."""
    start, calls = time.perf_counter(), 0
    while calls < min_calls or (calls < max_calls and time.perf_counter() - start < budget_s):
        run()
        synchronize(device)
        calls += 1

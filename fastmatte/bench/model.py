"""End-to-end frames per second of a whole matting model: fastmatte vs the same model with
backend="torch" (eager) and vs torch.compile of that eager model, batch 1, tensor in, alpha out.

The input is fastmatte.io.sample's synthetic portrait photo. The weights are random (drawn from a
fixed seed: no pretrained CRA weights are available here), so the model is handed a fixed
trimap on its 1/8 tile grid (fastmatte.bench.cases.portrait_trimap): the refined band, and with
it the work, is the same realistic head-and-shoulders outline for every backend instead of
whatever random weights predict. Speed does not depend on the weights' values.

Precision: fp16/bf16 mean the model's parameters and the image are in that dtype
(`model.to(dtype)`), as a deployment runs it, not autocast: autocast would leave the
fastmatte ops' inputs in whatever dtype each preceding layer produced and time the casts.
"""
import functools
import math
import statistics
import time
from typing import Callable, NamedTuple

import torch

from fastmatte.bench.cases import RESOLUTIONS, portrait_trimap
from fastmatte.bench.profiling import model_stages, profile_summary
from fastmatte.bench.timing import device_name, git_commit, median_ms, synchronize
from fastmatte.io.sample import sample_portrait
from fastmatte.matter import PRECISIONS, capture_graph
from fastmatte.models import MODELS, build_model
from fastmatte.models.cra.model import STRIDE  # the model pads H and W to multiples of it
from fastmatte.models.cra.refiner import TILE  # the trimap grid is 1/TILE of the padded image

BACKENDS = ("fastmatte", "eager", "compile", "cuda-graph")
DEFAULT_REPEATS = {"cpu": 10, "cuda": 100}  # timed calls per figure, by device type
WEIGHTS_SEED = 0
MIN_SIZE = 64  # the smallest frame side: fastmatte.sample_portrait's
# Largest |alpha_fastmatte - alpha_eager| accepted before timing: float32 reordering of sums
# through the network stays near 1e-6; fp16/bf16 carry their rounding (2^-11, 2^-8) through it.
DIFF_TOLERANCE = {"fp32": 1e-3, "fp16": 2e-2, "bf16": 8e-2}


class OutputMismatch(RuntimeError):
    """fastmatte's alpha differs from the eager model's beyond the precision's tolerance."""


class ModelInputs(NamedTuple):
    """One benchmark frame. image: [1, 3, H, W] in [0, 1]; trimap: [1, 3, H_pad/8, W_pad/8]
    logits (fg, unknown, bg) of a portrait outline, both in the model's dtype and device."""

    image: torch.Tensor
    trimap: torch.Tensor


def check_arguments(model_name, resolutions, device, precision, names=None):
    """Raise ValueError naming the argument when a benchmark cannot run as asked: an unknown
    model or resolution, a missing GPU, fp16/bf16 on the CPU. `names` maps the parameter names
    to what the caller calls them (the command line's options)."""
    name = {p: p for p in ("model_name", "resolutions", "device", "precision")} | (names or {})
    if model_name not in MODELS:
        raise ValueError(f"{name['model_name']} must be one of {', '.join(MODELS)}; got {model_name!r}")
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


def model_inputs(height, width, device, dtype=torch.float32) -> ModelInputs:
    """The benchmark frame at H x W (ints >= 64): fastmatte.io.sample's portrait photo and, on the
    padded size (multiples of 16) the model works at, portrait_trimap's outline (about 5-10%
    unknown tiles at HD/4K)."""
    padded_h, padded_w = (math.ceil(n / STRIDE) * STRIDE for n in (height, width))
    trimap = portrait_trimap(padded_h, padded_w, tile=TILE)
    photo = torch.from_numpy(sample_portrait(height, width)[0]).permute(2, 0, 1)[None]
    return ModelInputs((photo / 255).to(device, dtype), trimap.to(device, dtype))


def prepare_model(model_name, device, dtype=torch.float32, model_kwargs=None, model=None,
                  seed=WEIGHTS_SEED) -> torch.nn.Module:
    """build_model(model_name, **model_kwargs) with random weights drawn from `seed` (the same
    weights in every run; the global RNG is left as it was), or the given module (moved in
    place), on the device in dtype, in eval mode."""
    if model is None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = build_model(model_name, **(model_kwargs or {}))
    return model.to(device=device, dtype=dtype).eval()


def forward_fn(model, backend, inputs: ModelInputs) -> Callable[[], dict]:
    """The timed call of one backend: "fastmatte" = model(image, trimap), "eager" = the same
    with backend="torch", "compile" = torch.compile of the eager forward (compiles on its first
    call), "cuda-graph" = the fastmatte forward captured once in a CUDA graph and replayed (CUDA
    only; what fastmatte.Matter does for a fixed frame size; its output tensors are reused).
    Returns the model's output dict (alpha [1, 1, H, W], selection, ...)."""
    if backend == "fastmatte":
        return lambda: model(inputs.image, trimap=inputs.trimap)
    eager = functools.partial(model, backend="torch")
    if backend == "eager":
        return lambda: eager(inputs.image, trimap=inputs.trimap)
    if backend == "cuda-graph":
        # the deployment path (fastmatte.Matter): the fused model replayed as one CUDA graph,
        # captured at the first call so that a failed capture is reported like a failed compile
        captured = []

        def replay():
            if not captured:
                captured.extend(capture_graph(lambda: model(inputs.image, trimap=inputs.trimap)))
            graph, out = captured
            graph.replay()
            return out
        return replay
    if backend == "compile":
        # static shapes: each resolution gets its own graph, as a fixed-size video pipeline would
        compiled = torch.compile(eager, dynamic=False)
        return lambda: compiled(inputs.image, trimap=inputs.trimap)
    raise ValueError(f"backend must be one of {', '.join(BACKENDS)}; got {backend!r}")


def max_abs_diff(alpha, reference) -> float:
    """max |alpha - reference| in float32, both [B, 1, H, W]."""
    return (alpha.float() - reference.float()).abs().max().item()


def model_benchmark(model_name="cra", resolutions=("hd",), device=None, precision="fp32",
                    repeats=None, compile=None, profile=False, model_kwargs=None, *,
                    model=None, tolerance=None) -> list[dict]:
    """Frames per second of the model at each resolution, batch 1, per backend.

    resolutions: names ("hd", "4k") or explicit (height, width) pairs (labelled "HxW").
    device: "cpu" / "cuda" / torch.device, default cuda if present. precision: fp32, or on
    CUDA fp16/bf16 (the model and the image in that dtype). repeats: timed calls per figure
    (default DEFAULT_REPEATS of the device type), the backends taking turns (interleaved_ms:
    fewer, at least 5, once 10 s per backend are spent), after a check of each backend's output
    and a warm-up. compile: also time torch.compile of the eager model (default: on CUDA yes,
    on the CPU no; a compilation error is recorded in the record's "error", not raised).
    profile: attach profile_summary of the fastmatte and the eager forward (top ops, and the
    time in each of model_stages) to their records (key "profile").
    model_kwargs: passed to build_model; model: a ready module to time instead (moved to the
    device and dtype in place); its records are still labelled model_name.
    tolerance: largest accepted max |alpha - eager alpha| (default DIFF_TOLERANCE[precision]).

    Returns one record per (resolution, backend): model, resolution, height, width, backend,
    precision, fps_median, ms_median, tiles (refined tiles, from the selection's count),
    capacity (the selection's rows: on CUDA the refiner runs over all of them, padding included),
    max_abs_diff_vs_eager, error (None, or why the compile backend has no figure), device,
    torch, commit, model_kwargs. Raises OutputMismatch when fastmatte's alpha is off.
    """
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    check_arguments(model_name, resolutions, device, precision)
    compile = device.type == "cuda" if compile is None else compile
    repeats = repeats or DEFAULT_REPEATS[device.type]
    dtype = PRECISIONS[precision]
    tolerance = DIFF_TOLERANCE[precision] if tolerance is None else tolerance
    common = dict(model=model_name, precision=precision, device=device_name(device), torch=torch.__version__,
                  commit=git_commit(), model_kwargs=dict(model_kwargs or {}))
    backends = ["fastmatte", "eager"] + ["compile"] * compile + ["cuda-graph"] * (device.type == "cuda")
    records = []
    with torch.inference_mode():
        model = prepare_model(model_name, device, dtype, model_kwargs, model)
        for res in resolutions:
            height, width, label = frame_size(res)
            inputs = model_inputs(height, width, device, dtype)
            frame = dict(common, resolution=label, height=height, width=width)
            runs = {backend: forward_fn(model, backend, inputs) for backend in backends}
            eager_alpha = runs["eager"]()["alpha"]
            checked = {backend: check_backend(run, backend, eager_alpha, device, tolerance, label)
                       for backend, run in runs.items()}
            ready = {backend: runs[backend] for backend, (figures, _) in checked.items()
                     if not figures["error"]}
            for backend, ms in interleaved_ms(ready, device, repeats).items():
                figures, out = checked[backend]
                # the count is read (a host sync) only now, outside the timed calls; the inputs are fixed
                figures.update(ms_median=ms, fps_median=1e3 / ms, tiles=int(out["selection"].count.sum()),
                               capacity=out["selection"].tiles.shape[0])
            group = [dict(frame, backend=backend, **figures) for backend, (figures, _) in checked.items()]
            if profile:  # both backends, stage by stage: what the fastmatte ops save
                for record in group[:2]:  # fastmatte and eager
                    record["profile"] = profile_summary(runs[record["backend"]], device,
                                                        stages=model_stages(model))
            records += group
    return records


def check_backend(run, backend, eager_alpha, device, tolerance, label) -> tuple[dict, dict]:
    """Call run() (this compiles the "compile" backend), compare its alpha with the eager
    model's and warm it up. Returns (figures, output): figures = fps_median, ms_median, tiles
    and capacity (None until timed), max_abs_diff_vs_eager, and error = None, or for the compile
    backend (any failure) and the cuda-graph one (a failed capture) why it cannot be timed: a
    result to report, not a crash. Raises OutputMismatch when fastmatte's alpha, plain or
    replayed, is more than `tolerance` off."""
    figures = dict(fps_median=None, ms_median=None, tiles=None, capacity=None, max_abs_diff_vs_eager=None,
                   error=None)
    try:
        out = run()
        figures["max_abs_diff_vs_eager"] = diff = max_abs_diff(out["alpha"], eager_alpha)
        if not diff <= tolerance:  # NaN fails too
            who = {"compile": "torch.compile", "cuda-graph": "the CUDA graph of fastmatte"}.get(backend,
                                                                                            "fastmatte")
            raise OutputMismatch(f"{who} output does not match the eager model at {label}: "
                                 f"max |alpha - eager alpha| = {diff:.3g} > tolerance {tolerance:g}")
        warm_up(run, device)
    except Exception as error:
        # compile's failures are torch's; a graph that computes something else is fastmatte's
        graph_mismatch = backend == "cuda-graph" and isinstance(error, OutputMismatch)
        if backend not in ("compile", "cuda-graph") or graph_mismatch:
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

"""Where a model's frame time goes: the time inside each of its stages (top-level modules, the
fastmatte modules within them, and named parts of RVM's refiner), and a torch.profiler summary
of the top ops by self time."""
import contextlib
import functools
import sys
import time
from unittest import mock

import torch
from torch import nn
from torch.profiler import ProfilerActivity, profile

from fastmatte.bench.timing import synchronize
from fastmatte.models.cra.roi_head import CrossRegionTransformer
from fastmatte.models.rvm.refiner import DeepGuidedFilterRefiner
from fastmatte.nn import CrossRegionAttention, GatedConv2d

# Modules built on fastmatte's fused ops, timed as stages of their own.
FASTMATTE_MODULES = (CrossRegionAttention, CrossRegionTransformer, GatedConv2d)


def model_stages(model: nn.Module) -> dict:
    """The stages whose time profile_summary reports: the model's direct children (CRA:
    "encoder", "decoder", the heads, "roi_head", "roi_matte_head"; RVM: "backbone", "aspp"
    (LR-ASPP), "decoder", "project", "refiner"), nested in them every module built on fastmatte's
    fused ops (CRA's "roi_head.transformer"), and in a deep
    guided filter refiner (RVM's) its two halves: "refiner.low-res" (the coefficients at the
    network's resolution) and "refiner.guided_upsample" (the full-resolution op). A stage is a
    module, or (owner, attribute name) of a function that its parent calls through that
    attribute (a method of the module, the op in the module's Python module)."""
    stages = dict(model.named_children())
    for name, module in model.named_modules():
        if isinstance(module, FASTMATTE_MODULES) and name not in stages:
            stages[name] = module
        if isinstance(module, DeepGuidedFilterRefiner):
            stages[f"{name}.low-res"] = (module, "coefficients")
            stages[f"{name}.guided_upsample"] = (sys.modules[type(module).__module__], "guided_upsample")
    return stages


def stage_ms(fn, stages: dict, device, iterations=5) -> dict[str, float]:
    """Milliseconds per fn() call spent inside each stage (model_stages' kinds: a module's
    forward, timed by hooks around it; (owner, attribute), timed by a wrapper put in that
    attribute's place meanwhile), with CUDA events on a GPU, so that nothing waits on the
    device mid-frame, and the wall clock on the CPU; plus "frame", the whole call,
    synchronized. A nested stage's time is also in its parent's. Hooks and wrappers are
    removed afterwards."""
    device = torch.device(device)
    on_gpu = device.type == "cuda"
    spans = {name: [] for name in stages}  # (start, end) per call: events or perf_counter values

    def mark():
        if on_gpu:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            return event
        return time.perf_counter()

    def timed(name, function):
        @functools.wraps(function)
        def wrapper(*args, **kwargs):
            spans[name].append([mark()])
            try:
                return function(*args, **kwargs)
            finally:
                spans[name][-1].append(mark())
        return wrapper

    with contextlib.ExitStack() as undo:
        for name, stage in stages.items():
            if isinstance(stage, nn.Module):
                pre = stage.register_forward_pre_hook(lambda *_, name=name: spans[name].append([mark()]))
                post = stage.register_forward_hook(lambda *_, name=name: spans[name][-1].append(mark()))
                undo.callback(pre.remove)
                undo.callback(post.remove)
            else:
                owner, attribute = stage
                wrapper = timed(name, getattr(owner, attribute))
                undo.enter_context(mock.patch.object(owner, attribute, wrapper))
        fn()  # not counted: the first call after a change of hooks may rebuild caches
        synchronize(device)
        for recorded in spans.values():
            recorded.clear()
        start = time.perf_counter()
        for _ in range(iterations):
            fn()
        synchronize(device)
        frame_ms = (time.perf_counter() - start) * 1e3 / iterations
    elapsed = (lambda a, b: a.elapsed_time(b)) if on_gpu else (lambda a, b: (b - a) * 1e3)
    times = {name: sum(elapsed(a, b) for a, b in recorded) / iterations for name, recorded in spans.items()}
    return times | {"frame": frame_ms}


def profile_summary(fn, device, iterations=5, top=15, stages=None) -> dict:
    """Profile `iterations` calls of fn() (after one unprofiled call) on the CPU and, for a CUDA
    device, the GPU. Returns a JSON-able dict:

    clock: "cuda" (ops ranked by the GPU time of the kernels each launched) or "cpu";
    frame_ms: wall time per call under the profiler (synchronized); busy_ms: the clock's summed
    self time per call (on CUDA, frame_ms - busy_ms is time the GPU sat idle); ops: the `top`
    ops by self time, each {name, calls, self_ms, total_ms, percent}, per call, percent = self_ms
    as a share of frame_ms. User annotations (record_function ranges) are left out, so that
    no kernel counts twice. stages: when given (model_stages' dict), also "stages": stage_ms of
    them (measured outside the profiler).
    """
    device = torch.device(device)
    on_gpu = device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if on_gpu else [])
    fn()
    synchronize(device)
    with profile(activities=activities) as prof:
        start = time.perf_counter()
        for _ in range(iterations):
            fn()
        synchronize(device)
        frame_ms = (time.perf_counter() - start) * 1e3 / iterations
    events = [e for e in prof.key_averages() if not e.is_user_annotation]
    self_us, total_us = ("self_device_time_total", "device_time_total") if on_gpu else \
        ("self_cpu_time_total", "cpu_time_total")
    # On CUDA the kernels appear twice: as their own rows and in the self device time of the op
    # that launched them. Rank the launching ops; sum the kernel rows for the busy time.
    ops = [e for e in events if e.device_type == torch.autograd.DeviceType.CPU]
    clock_rows = [e for e in events if e.device_type != torch.autograd.DeviceType.CPU] if on_gpu else ops
    ops.sort(key=lambda e: getattr(e, self_us), reverse=True)
    per_call = 1e-3 / iterations  # microseconds summed over the calls -> milliseconds per call
    rows = [dict(name=e.key, calls=e.count / iterations, self_ms=getattr(e, self_us) * per_call,
                 total_ms=getattr(e, total_us) * per_call,
                 percent=100 * getattr(e, self_us) * per_call / frame_ms) for e in ops[:top]]
    summary = dict(clock="cuda" if on_gpu else "cpu", iterations=iterations, frame_ms=frame_ms,
                   busy_ms=sum(getattr(e, self_us) for e in clock_rows) * per_call, ops=rows)
    if stages:
        summary["stages"] = stage_ms(fn, stages, device, iterations)
    return summary


def format_profile(summary, label="") -> str:
    """profile_summary's dict as text: the stages (if measured), then the top-ops table; `label`
    says what was profiled ("hd fastmatte")."""
    head = f"profile of {label}" if label else "profile"
    lines = []
    if "stages" in summary:
        rows = _stage_rows(summary["stages"])
        frame = rows.pop("frame")
        lines.append(f"{head}: time per frame by stage ({frame:.2f} ms a frame, outside the profiler)")
        lines += [f"  {name:48s} {ms:9.3f} ms {100 * ms / frame:6.1f}%" for name, ms in rows.items()]
    lines += [f"{head}: {summary['clock']} time over {summary['iterations']} calls, frame "
              f"{summary['frame_ms']:.2f} ms under the profiler, {summary['busy_ms']:.2f} ms busy",
              f"  {'op':48s} {'calls':>6s} {'self ms':>9s} {'total ms':>9s} {'% frame':>8s}"]
    for op in summary["ops"]:
        name = op["name"] if len(op["name"]) <= 48 else op["name"][:45] + "..."
        lines.append(f"  {name:48s} {op['calls']:6.0f} {op['self_ms']:9.3f} {op['total_ms']:9.3f} "
                     f"{op['percent']:7.1f}%")
    return "\n".join(lines)


def format_stage_comparison(records) -> str:
    """Per resolution, each stage's ms per frame for every profiled backend side by side, and
    eager / fastmatte: where the fastmatte ops save time and where both spend the same."""
    lines = []
    for res in dict.fromkeys(r["resolution"] for r in records):
        profiled = {r["backend"]: r["profile"]["stages"] for r in records
                    if r["resolution"] == res and "stages" in r.get("profile", {})}
        if not profiled:
            continue
        profiled = {backend: _stage_rows(stages) for backend, stages in profiled.items()}
        names = list(next(iter(profiled.values())))
        lines.append(f"{res}: ms per frame by stage" + " " * 22 + "".join(f"{b:>11s}" for b in profiled)
                     + ("   eager/fastmatte" if {"fastmatte", "eager"} <= set(profiled) else ""))
        for name in names:
            row = f"  {name:46s}" + "".join(f"{stages[name]:11.2f}" for stages in profiled.values())
            if {"fastmatte", "eager"} <= set(profiled):
                row += f"   {profiled['eager'][name] / max(profiled['fastmatte'][name], 1e-9):8.2f}x"
            lines.append(row)
    return "\n".join(lines)


def _stage_rows(stages) -> dict[str, float]:
    """stage_ms's dict with "rest of forward" (the frame less its top-level stages: the ops
    called outside any stage module) inserted before "frame"."""
    rows = {name: ms for name, ms in stages.items() if name != "frame"}
    rows["rest of forward"] = stages["frame"] - sum(ms for name, ms in rows.items() if "." not in name)
    return rows | {"frame": stages["frame"]}

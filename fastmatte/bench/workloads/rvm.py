"""RVM's workload: a video clip made from a real photograph, run the way a video pipeline runs a
recurrent model, each call the next frame from the state the previous call returned.

Weights: the released ones when fetched (`fastmatte weights get rvm`; load_model("rvm")), else
random ones from a fixed seed, and the records (weights: "released" / "random") and the printed
header say which. Speed does not depend on the weights' values; the onnxruntime backend, which
runs the released file, is compared (and so timed) only with the released weights.
Input: CLIP_FRAMES frames at H x W of a slow pan and zoom across scikit-image's astronaut
photograph (fastmatte.io.sample.pan_zoom_frames, as `make demo`'s clip), cycled; without
scikit-image, fastmatte's procedural sample portrait at the same size, panned the same way
(records: clip). Every backend runs at downsample_ratio = auto_downsample_ratio(H, W) (the
authors' advice: the long side brought to about 512), recorded with each record.
Backends: fastmatte, eager, compile and cuda-graph as for every model; on CUDA the graph reads
the state from static buffers, as fastmatte.Matter runs recurrent models; and onnxruntime
(fastmatte.bench.workloads.rvm_onnxruntime). Each backend's alpha is compared with the eager
model's over the first CHECK_FRAMES frames, the state carried; onnxruntime's within
ONNX_TOLERANCE (fp32: it runs in fp32 only).
"""
import functools
from typing import NamedTuple

import torch

from fastmatte.bench.workloads.base import DIFF_TOLERANCE, Runner, Workload, prepare_model
from fastmatte.bench.workloads.onnx_session import onnxruntime_version
from fastmatte.bench.workloads.rvm_onnxruntime import OnnxStep
from fastmatte.io.demo import astronaut
from fastmatte.io.sample import pan_zoom_frames, sample_portrait
from fastmatte.matter import _load_state, capture_graph
from fastmatte.models import WeightsError, default_weights, load_model
from fastmatte.models.rvm import auto_downsample_ratio

CLIP_FRAMES = 8
CHECK_FRAMES = 3
# fp32, max abs: onnxruntime and fastmatte's RVM differ by about 1e-5 on real frames
# (/work/shared/oracles/rvm_notes.md; 5e-5 measured at HD on the astronaut clip)
ONNX_TOLERANCE = 1e-4
PHOTO_SIDE = 512  # the sample portrait stands in for the 512 x 512 astronaut


class ClipInputs(NamedTuple):
    """frames: CLIP_FRAMES [1, 3, H, W] tensors in [0, 1] (contiguous, in the model's dtype and
    device); downsample_ratio: the ratio every backend uses; clip: the photo they come from."""

    frames: list
    downsample_ratio: float
    clip: str


def clip_frames(height, width, frames=CLIP_FRAMES) -> tuple[list, str]:
    """(uint8 RGB [H, W, 3] frames of the pan across the photo, the photo's name: "astronaut",
    or "sample portrait" when scikit-image is missing)."""
    try:
        photo, name = astronaut(), "astronaut"
    except ImportError:
        photo, name = sample_portrait(PHOTO_SIDE, PHOTO_SIDE)[0], "sample portrait"
    return list(pan_zoom_frames(photo, frames=frames, size=(width, height))), name


def released_weights() -> bool:
    """Whether RVM's released weights are fetched (load_model("rvm") would read them)."""
    try:
        default_weights("rvm")
    except WeightsError:
        return False
    return True


class RVMWorkload(Workload):
    """RVM on the pan clip with its state carried (see the module). Records add
    downsample_ratio, weights, clip and onnxruntime (its version, None when missing)."""

    name = "rvm"
    check_frames = CHECK_FRAMES

    def __init__(self):
        self.weights = None  # "released", "random" or "given" (a module passed in), once prepared

    def describe(self) -> str:
        weights = "released weights" if released_weights() else ("RANDOM weights: the released ones are not "
                                                                 "fetched (`fastmatte weights get rvm`)")
        try:
            astronaut()
            clip = "the astronaut photo"
        except ImportError:
            clip = "the sample portrait (scikit-image, whose astronaut photo it stands for, is not installed)"
        version = onnxruntime_version()
        ort = f"onnxruntime {version}: the released ONNX file, intra-op threads {torch.get_num_threads()} " \
              f"(as torch), inter-op 1" if version else "onnxruntime not installed"
        return (f"{weights}; input: a {CLIP_FRAMES}-frame pan across {clip}, cycled, the state carried from "
                f"call to call; downsample ratio 512 / long side; {ort}")

    def prepare(self, device, dtype, model_kwargs=None, model=None):
        if model is None and released_weights():
            self.weights = "released"
            return load_model(self.name, **(model_kwargs or {})).to(device=device, dtype=dtype).eval()
        self.weights = "random" if model is None else "given"
        return prepare_model(self.name, device, dtype, model_kwargs, model)

    def inputs(self, height, width, device, dtype) -> ClipInputs:
        frames, clip = clip_frames(height, width)
        tensors = [(torch.from_numpy(f).permute(2, 0, 1)[None] / 255).to(device, dtype).contiguous()
                   for f in frames]
        return ClipInputs(tensors, auto_downsample_ratio(height, width), clip)

    def backends(self, device, compile) -> list[str]:
        return super().backends(device, compile) + ["onnxruntime"]

    def runner(self, model, backend, inputs: ClipInputs) -> Runner:
        """Each call: the next frame, from the state the previous call returned. "fastmatte" =
        model(frame, state, downsample_ratio), "eager" = the same with backend="torch",
        "compile" = torch.compile of the eager forward, "cuda-graph" = the fastmatte forward
        replayed as a CUDA graph (GraphStep), "onnxruntime" = the released file (OnnxStep)."""
        ratio = inputs.downsample_ratio
        if backend == "onnxruntime":
            return Runner(OnnxStep(ratio, self.weights), inputs.frames)
        if backend == "cuda-graph":
            return Runner(GraphStep(model, ratio), inputs.frames)
        if backend not in ("fastmatte", "eager", "compile"):
            raise ValueError(f"backend must be one of fastmatte, eager, compile, cuda-graph, onnxruntime; "
                             f"got {backend!r}")
        call = model if backend == "fastmatte" else functools.partial(model, backend="torch")
        if backend == "compile":  # static shapes: a graph per resolution, as a fixed-size pipeline has
            call = torch.compile(call, dynamic=False)

        def step(frame, state):
            out = call(frame, state, downsample_ratio=ratio)
            return out, out["state"]
        return Runner(step, inputs.frames)

    def tolerance(self, backend, precision) -> float:
        return ONNX_TOLERANCE if backend == "onnxruntime" else DIFF_TOLERANCE[precision]

    def figures(self, inputs: ClipInputs) -> dict:
        return dict(downsample_ratio=inputs.downsample_ratio, weights=self.weights, clip=inputs.clip,
                    onnxruntime=onnxruntime_version())


class GraphStep:
    """Runner's step of the cuda-graph backend: the fastmatte forward captured once (at the
    first call) in a CUDA graph that reads the frame and the state from static buffers; each
    call copies them in (zeros for state None, fastmatte.matter's _load_state) and replays.
    The outputs are the graph's, overwritten by the next call."""

    def __init__(self, model, downsample_ratio):
        self.model, self.ratio = model, downsample_ratio
        self.graph = None

    def __call__(self, frame, state):
        if self.graph is None:
            self._capture(frame)
        self.frame.copy_(frame)
        _load_state(self.state_in, state)
        self.graph.replay()
        return self.out, self.state_out

    def _capture(self, frame):
        self.frame = frame.clone()
        # the state buffers take the shapes of a real state: one eager frame's
        first = self.model(self.frame, downsample_ratio=self.ratio)["state"]
        self.state_in = tuple(torch.zeros_like(s) for s in first)
        self.graph, self.out = capture_graph(lambda: self.model(self.frame, self.state_in,
                                                                downsample_ratio=self.ratio))
        self.state_out = tuple(self.out["state"])

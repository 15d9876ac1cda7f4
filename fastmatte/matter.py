"""Matter: a matting model ready for pipelines. uint8 frames in, alpha (or a composite, or the
foreground) out, with the GPU kept busy: pinned-memory uploads, CUDA graphs per frame shape, and
no waiting on the GPU except for the result the caller asks for on the host. A recurrent model
(a video model such as RVM) carries its state from each frame to the next; an instance model
(such as E2E-HIM) gives a list of per-instance mattes per frame."""
import contextlib
import inspect
import warnings
from collections import OrderedDict
from dataclasses import dataclass
from typing import NamedTuple, Optional

import numpy as np
import torch

from fastmatte.models import MODELS, build_model, load_model, load_weights

PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
_KEPT_SHAPES = 4  # CUDA graphs and pinned buffers kept for this many frame shapes (LRU)
_STAGING_SLOTS = 2  # pinned buffers per shape: one is filled while the other is uploading


class RandomWeightsWarning(UserWarning):
    """A Matter built by name without a weights file: its mattes are meaningless, its speed is not."""


class Outputs(NamedTuple):
    """What Matter.outputs gives for one frame, all from one run of the model.

    alpha: NumPy uint8 round(255 alpha), [H, W] ([B, H, W] for a BCHW frame); for an instance
      model, as Matter.alpha_uint8 gives it: a list.
    composite: as Matter.composite gives it, or None when no background was asked for.
    foreground: NumPy uint8 RGBA [H, W, 4] ([B, H, W, 4] for BCHW): round(255 fg) and, in the
      4th channel, the alpha above (straight, not premultiplied); None when not asked for.
    """
    alpha: np.ndarray
    composite: object
    foreground: Optional[np.ndarray]


@dataclass
class _Graph:
    graph: torch.cuda.CUDAGraph
    input: torch.Tensor  # the static input the graph reads (the frame's layout and dtype)
    alpha: torch.Tensor  # the static output it writes, [B, 1, H, W] in the model's dtype
    foreground: Optional[torch.Tensor]  # [B, 3, H, W], a recurrent model's; None otherwise
    state_in: Optional[tuple]  # a recurrent model's static state buffers, read by the graph
    state_out: Optional[tuple]  # and the new state it writes (None for per-frame models)


@dataclass
class _Run:
    """One run of the model on a frame: alpha [B, 1, H, W] and foreground [B, 3, H, W] (or None) on
    the device in the model's dtype (a graph's static outputs: read them before the next run); for
    an instance model, alpha is a list of B tensors [n_i, H, W] (eager outputs) instead,
    the frame on the device as given, its layout, the frame itself, and the composite's
    background (float32 0..255, broadcastable to [B, 3, H, W] on the device) when one was asked for."""
    alpha: torch.Tensor
    foreground: Optional[torch.Tensor]
    x: torch.Tensor
    layout: str
    like: object
    background: Optional[torch.Tensor]


class Matter:
    """A matting model in eval mode on `device`, in `precision`, called on frames.

    model: a name in fastmatte.models.MODELS ("cra", see `fastmatte info`), built with `config`
      (the model's build arguments, e.g. tile_capacity=0.05 for "cra"), or an nn.Module with
      predict(image) -> alpha [B, 1, H, W] (every zoo model has it), taken as it is (config must
      then be empty; configure the module yourself). Either way the module is moved to device
      and precision in place, put in eval mode, and its parameters stop requiring gradients.
      Frames of a per-frame model go through its predict: its official inference recipe. A
      model whose class says `recurrent = True` (a video model such as RVM) is called as
      model(image, state=..., **call_options) -> {"alpha", "foreground", "state"} instead, with
      the state of the previous frame (below). A model whose class says `instances = True` (an
      instance matting model such as E2E-HIM) has predict(image) -> a list of B tensors
      [n_i, H, W] in [0, 1], the mattes of the n_i instances present in image i (n_i may be 0),
      in the model's order; its results are lists (below). Instance models are not recurrent.
    weights: a local checkpoint file. With a model name it is read by
      fastmatte.models.load_model: any format fastmatte reads (safetensors, PyTorch files read
      with weights_only=True, PaddlePaddle .pdparams, ONNX), official layouts converted, loaded
      strictly; a file from `fastmatte convert` brings its configuration along. With a module
      it must hold that module's own state dict (fastmatte.models.load_weights). Nothing is
      downloaded here. With weights=None, a model whose real weights fastmatte fetches as an
      install step (`fastmatte weights get NAME`) loads them, and fails saying that command when
      they are not fetched yet; any other model built by name keeps its random initialization:
      `random_weights` is then True and a RandomWeightsWarning says so once.
    device: "cpu", "cuda", "cuda:N" or a torch.device. precision: "fp32", or "fp16"/"bf16"
      (CUDA only; ValueError on the CPU).
    cuda_graph: on CUDA, the second frame of a given shape and dtype is captured in a CUDA
      graph (after a warm-up on a side stream) and later frames of that shape replay it; if
      capture fails, a warning says why and that shape runs eagerly. The first frame of each
      shape runs eagerly, so a folder of differently sized photos costs no captures. A
      recurrent model's graph reads its state from static buffers: the state is copied into
      them (on the GPU, in stream order) before each replay, and the new state is the graph's
      output, fed to the next frame. Instance models always run eagerly (no graph): their
      instance count is data-dependent and read on the host.
    call_options: keyword arguments for every call of the model (its predict, or a recurrent
      model's forward), e.g. {"downsample_ratio": 0.25} for RVM at HD (without it the model
      picks its own). Build arguments go in `config`; these are the per-call settings a model's
      authors expose at inference. Each key must be an argument of that method (ValueError
      naming it otherwise); "state" is Matter's to pass.

    Frames (every method takes the same):
      NumPy: uint8 RGB [H, W, 3].
      torch: uint8 (0..255) or float (0..1, not checked, which would cost a sync) tensors,
        on any device: [H, W, 3] (HWC), [3, H, W] (CHW) or [B, 3, H, W] (BCHW). A 3-D tensor
        whose first and last sizes are both 3 is ambiguous and refused (pass it as BCHW).
    Recurrent models (`recurrent` is True): every call of any method below is the next frame of
      one clip, matted from the state the previous call left (kept on `device` as the model
      returned it), so call one method per frame: outputs() gives everything from one run.
      reset() starts a new clip from a zero state; so does, by itself and silently, a frame
      whose shape (size or batch), dtype or layout differs from the previous frame's. A BCHW
      batch is B clips side by side. Per-frame models have no state; reset() does nothing.
    Results:
      matter(frame): float32 alpha in [0, 1]; NumPy [H, W] for a NumPy frame; for a tensor, a
        tensor on the frame's device, [H, W] for a 3-D frame, [B, 1, H, W] for BCHW.
      alpha_uint8(frame): NumPy uint8 round(255 alpha), [H, W] ([B, H, W] for BCHW).
      alpha_tensor(frame): the model's alpha on `device`, [B, 1, H, W] in the model's dtype,
        without waiting for the GPU (a fresh tensor; the next call does not overwrite it).
      foreground(frame): the foreground colour the model predicts, float32 in [0, 1], in the
        frame's kind and layout (NumPy [H, W, 3]; tensors HWC, CHW or BCHW on the frame's
        device). Only models that predict one (`predicts_foreground`: the recurrent ones);
        ValueError "model X predicts no foreground" otherwise.
      composite(frame, background): uint8 round(alpha fg + (1 - alpha) bg) in the frame's kind
        and layout (NumPy [H, W, 3]; tensors HWC, CHW or BCHW on the frame's device), fg and bg
        in 0..255 (a float frame is scaled by 255, not rounded first). fg is the foreground the
        model predicts where it predicts one (as RVM's authors composite: the frame's colours
        at the edges still hold the old background, which the predicted foreground has
        removed), else the frame itself.
      alpha_and_composite(frame, background): both of the last two from one run of the model.
      outputs(frame, background=None, foreground=False): Outputs(alpha uint8, composite,
        RGBA foreground) from one run of the model: what a video pipeline writes per frame.
    Instance models (`instances` is True) give, in the model's instance order:
      matter(frame): a list of float32 [H, W] mattes in [0, 1] (NumPy for a NumPy frame, tensors
        on the frame's device for HWC/CHW); for BCHW, a list per image of [n_i, H, W] tensors.
      alpha_uint8(frame): a list of uint8 [H, W] arrays (BCHW: a list per image of [n_i, H, W]).
      alpha_tensor(frame): a list per image of [n_i, H, W] tensors on `device`, model dtype.
      composite, alpha_and_composite, outputs: composited with the union matte, the per-pixel
        max over the instances (0, the background alone, where there is none).
      foreground: ValueError, as for every model that predicts none.
    """

    def __init__(self, model="cra", weights=None, device="cpu", precision="fp32", cuda_graph=True,
                 call_options=None, **config):
        self.device = _device(device)
        if precision not in PRECISIONS:
            raise ValueError(f"Matter: precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        if precision != "fp32" and self.device.type != "cuda":
            raise ValueError(f"Matter: precision {precision!r} needs device='cuda'; on {self.device} "
                             "use 'fp32'")
        self.precision, self.dtype = precision, PRECISIONS[precision]
        fetched = isinstance(model, str) and weights is None and MODELS.get(model) is not None \
            and MODELS[model].default_weights is not None
        if isinstance(model, str):
            random = weights is None and not fetched
            module = build_model(model, **config) if random else load_model(model, weights, **config)
        elif isinstance(model, torch.nn.Module):
            if config:
                raise ValueError(f"Matter: {', '.join(config)} applies to a model built by name; configure "
                                 "the module you pass instead")
            if not callable(getattr(model, "predict", None)):
                raise TypeError(f"Matter: the module must have predict(image) -> alpha [B, 1, H, W], as "
                                f"every fastmatte model has; {type(model).__name__} has none")
            module = model if weights is None else load_weights(model, weights)
        else:
            raise TypeError(f"Matter: model must be a model name or an nn.Module, got {type(model).__name__}")
        self.name = model if isinstance(model, str) else type(model).__name__
        self.random_weights = weights is None and isinstance(model, str) and not fetched
        if self.random_weights:
            warnings.warn(RandomWeightsWarning(
                f"Matter({model!r}) has random weights (no weights file given): its mattes are meaningless, "
                "though its speed is that of the trained model"), stacklevel=2)
        self.model = module.to(self.device, self.dtype).eval().requires_grad_(False)
        self.recurrent = getattr(type(module), "recurrent", False) is True
        self.instances = getattr(type(module), "instances", False) is True
        if self.recurrent and self.instances:
            raise ValueError(f"Matter: {type(module).__name__} says both recurrent and instances; an "
                             "instance model cannot be recurrent")
        self.predicts_foreground = self.recurrent  # a recurrent model's forward gives "foreground"
        self.call_options = _call_options(module, self.recurrent, call_options)
        # Instance models run eagerly: their outputs' sizes depend on the data.
        self.cuda_graph = bool(cuda_graph) and self.device.type == "cuda" and not self.instances
        self._graphs = OrderedDict()  # frame key -> _Graph, or None where capture failed
        self._seen = set()  # frame keys run once (eagerly)
        self._staging = OrderedDict()  # (shape, dtype) -> [[pinned buffer, upload event or None], ...]
        self._state = None  # a recurrent model's state after the last frame; None: a zero state
        self._clip = None  # the frame key of the clip that state belongs to

    def reset(self):
        """Start a new clip: a recurrent model's next frame is matted from a zero state."""
        self._state = None

    @torch.no_grad()
    def __call__(self, frame):
        run = self._run(frame)
        if self.instances:
            if isinstance(run.like, np.ndarray):
                return list(run.alpha[0].float().cpu().numpy())
            mattes = [a.to(run.like.device, torch.float32, copy=True) for a in run.alpha]
            return mattes if run.layout == "bchw" else list(mattes[0])
        if isinstance(run.like, np.ndarray):
            return run.alpha[0, 0].float().cpu().numpy()
        # A copy: never a graph's output, which the next replay overwrites.
        alpha = run.alpha.to(run.like.device, torch.float32, copy=True)
        return alpha if run.layout == "bchw" else alpha[0, 0]

    @torch.no_grad()
    def alpha_uint8(self, frame) -> np.ndarray:
        run = self._run(frame)
        return _uint8(run.alpha, run.layout, self.instances)

    @torch.no_grad()
    def alpha_tensor(self, frame) -> torch.Tensor:
        alpha = self._run(frame).alpha
        return [a.clone() for a in alpha] if self.instances else alpha.clone()

    @torch.no_grad()
    def foreground(self, frame):
        self._check_foreground()
        run = self._run(frame)
        return _like_frame(run.foreground.to(torch.float32, copy=True), run.layout, run.like)

    @torch.no_grad()
    def composite(self, frame, background=(0, 255, 0)):
        """background: an (r, g, b) colour of ints 0..255, or a uint8 RGB [H, W, 3] image (NumPy
        or tensor) of the frame's size. An instance model's frame is composited with the union
        matte: the per-pixel max over its instances (the background alone where there is none)."""
        return self._composite(self._run(frame, background))

    @torch.no_grad()
    def alpha_and_composite(self, frame, background=(0, 255, 0)):
        """(alpha_uint8(frame), composite(frame, background)) from one run of the model."""
        run = self._run(frame, background)
        return _uint8(run.alpha, run.layout, self.instances), self._composite(run)

    @torch.no_grad()
    def outputs(self, frame, background=None, foreground: bool = False) -> Outputs:
        """Outputs(alpha, composite over `background` or None when it is None, the RGBA
        foreground when `foreground` or None) from one run of the model (see Outputs).
        foreground=True needs a model that predicts one (ValueError before the model runs)."""
        if foreground:
            self._check_foreground()
        run = self._run(frame, background)
        alpha = _uint8(run.alpha, run.layout, self.instances)
        composite = None if background is None else self._composite(run)
        rgba = None
        if foreground:
            rgb = (run.foreground.float() * 255).round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1)
            rgba = np.concatenate([rgb.cpu().numpy(), alpha.reshape(*rgb.shape[:3], 1)], axis=-1)
            rgba = rgba if run.layout == "bchw" else rgba[0]
        return Outputs(alpha, composite, rgba)

    def _check_foreground(self):
        if not self.predicts_foreground:
            raise ValueError(f"Matter: model {self.name} predicts no foreground (only recurrent models such "
                             "as RVM do); use alpha or composite")

    def _composite(self, run):
        if run.foreground is not None:
            fg = run.foreground.float() * 255
        else:
            fg = _bchw(run.x, run.layout).float()
            if run.x.dtype != torch.uint8:
                fg = fg * 255
        alpha = _union(run.alpha, _bchw(run.x, run.layout).shape) if self.instances else run.alpha.float()
        out = (alpha * fg + (1 - alpha) * run.background).round_().clamp_(0, 255).to(torch.uint8)
        return _like_frame(out, run.layout, run.like)

    def _run(self, frame, background=None) -> _Run:
        """The model run on `frame`, with `background` (for a composite) checked first: a frame or
        background that is refused leaves a recurrent model's state as it was."""
        t, layout = _as_tensor(frame)
        key = (tuple(t.shape), t.dtype, layout)
        on_gpu = self.device.type == "cuda"
        # On a GPU: the streams and events of this one, whichever is current.
        with torch.cuda.device(self.device) if on_gpu else contextlib.nullcontext():
            bg = None if background is None else self._background(background, _bchw(t, layout).shape)
            if key != self._clip:  # another shape, dtype or layout: a new clip
                self._state, self._clip = None, key
            graph = self._graph_for(key) if self.cuda_graph else None
            if graph is not None:
                self._upload(t, graph.input)
                if graph.state_in is not None:
                    _load_state(graph.state_in, self._state)
                graph.graph.replay()
                self._state = graph.state_out
                return _Run(graph.alpha, graph.foreground, graph.input, layout, frame, bg)
            x = self._upload(t) if on_gpu else t.to(self.device)
            alpha, foreground, self._state = self._forward(self._model_input(x, layout), self._state)
            return _Run(alpha, foreground, x, layout, frame, bg)

    def _forward(self, x, state):
        """(alpha, foreground or None, the new state or None) of one run of the model on its input
        x [B, 3, H, W], from `state` (a recurrent model's; None: zero). Changes nothing in self,
        so that a CUDA graph can capture it."""
        if self.instances:
            mattes = self.model.predict(x, **self.call_options)
            return _instance_mattes(self.name, mattes, x.shape), None, None
        if not self.recurrent:
            return self.model.predict(x, **self.call_options), None, None
        out = self.model(x, state=state, **self.call_options)
        if not isinstance(out, dict) or not {"alpha", "foreground", "state"} <= set(out):
            got = sorted(out) if isinstance(out, dict) else type(out).__name__
            raise TypeError(f"Matter: the recurrent model {self.name} must return a dict with 'alpha', "
                            f"'foreground' and 'state', got {got}")
        return out["alpha"], out["foreground"], tuple(out["state"])

    def _model_input(self, x, layout):
        x = _bchw(x, layout)
        if x.dtype == torch.uint8:  # divided in fp32, then rounded once to the model's precision
            x = x.to(torch.float32) / 255
        return x.to(self.dtype).contiguous()

    def _upload(self, t, out=None):
        """t on self.device: copied into `out` when given, else a new tensor (or t itself when it
        is there already). A pageable CPU tensor goes through a pinned buffer, so that the copy to
        the GPU is asynchronous; the host waits only for the upload that last used that buffer."""
        slot = None
        if t.device.type == "cpu" and self.device.type == "cuda" and not t.is_pinned():
            slot = self._staging_slot(t)
            slot[0].copy_(t)
            t = slot[0]
        if out is None:
            out = t.to(self.device, non_blocking=True)
        else:
            out.copy_(t, non_blocking=True)
        if slot is not None:
            if slot[1] is None:
                slot[1] = torch.cuda.Event()
            slot[1].record(torch.cuda.current_stream(self.device))
        return out

    def _staging_slot(self, t):
        key = (tuple(t.shape), t.dtype)
        if key not in self._staging:
            self._staging[key] = [[torch.empty(t.shape, dtype=t.dtype, pin_memory=True), None]
                                  for _ in range(_STAGING_SLOTS)]
            if len(self._staging) > _KEPT_SHAPES:
                for _, event in self._staging.popitem(last=False)[1]:
                    if event is not None:
                        event.synchronize()  # its buffer may still be uploading
        self._staging.move_to_end(key)
        slots = self._staging[key]
        slots.append(slots.pop(0))  # round robin: the slot used longest ago
        slot = slots[-1]
        if slot[1] is not None:
            slot[1].synchronize()
        return slot

    def _graph_for(self, key):
        if key in self._graphs:
            self._graphs.move_to_end(key)
            return self._graphs[key]
        if key not in self._seen:
            self._seen.add(key)
            return None
        if self.recurrent and self._state is None:
            return None  # eager; captured at the clip's next frame, whose state shapes the static buffers
        self._graphs[key] = self._capture(*key)
        if len(self._graphs) > _KEPT_SHAPES:
            torch.cuda.current_stream(self.device).synchronize()  # the oldest graph may still be running
            self._graphs.popitem(last=False)
        return self._graphs[key]

    def _capture(self, shape, dtype, layout):
        static = torch.zeros(shape, dtype=dtype, device=self.device)
        # A recurrent model's graph reads its state from buffers of the state's shapes, which
        # _run fills before every replay (zeros after a reset).
        state = None if self._state is None else tuple(s.clone() for s in self._state)
        run = lambda: self._forward(self._model_input(static, layout), state)  # noqa: E731
        try:
            graph, (alpha, foreground, new_state) = capture_graph(run)
        except Exception as error:  # capture raises many types; eager still works
            warnings.warn(f"Matter: CUDA graph capture failed for {layout} frames {list(shape)} {dtype} "
                          f"({type(error).__name__}: {error}); running them eagerly", stacklevel=4)
            return None
        return _Graph(graph, static, alpha, foreground, state, new_state)

    def _background(self, background, shape):
        """background as float32 0..255, broadcastable to `shape` [B, 3, H, W], on the device."""
        if isinstance(background, (tuple, list)):
            if len(background) != 3 or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool)
                                                and 0 <= v <= 255 for v in background):
                raise ValueError(f"Matter.composite: a background colour must be (r, g, b) ints in 0..255, "
                                 f"got {background!r}")
            return torch.tensor(background, dtype=torch.float32, device=self.device).view(1, 3, 1, 1)
        image = torch.from_numpy(_usable(background)) if isinstance(background, np.ndarray) else background
        if not torch.is_tensor(image) or image.dtype != torch.uint8 or tuple(image.shape) != (*shape[2:], 3):
            got = f"{image.dtype} {list(image.shape)}" if hasattr(image, "shape") else type(image).__name__
            raise ValueError(f"Matter.composite: background must be (r, g, b) or a uint8 RGB image "
                             f"[{shape[2]}, {shape[3]}, 3] (the frame's size), got {got}")
        return self._upload(image).permute(2, 0, 1).unsqueeze(0).float()


def _device(device) -> torch.device:
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise ValueError(f"Matter: device must be 'cpu', 'cuda', 'cuda:N' or a torch.device, "
                         f"got {device!r}") from error
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"Matter: device must be the CPU or a CUDA GPU, got {device}")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("Matter: device='cuda', but no CUDA GPU is available here")
        if device.index is None:  # tensors report cuda:N; compare like with like
            device = torch.device("cuda", torch.cuda.current_device())
    return device


def _as_tensor(frame):
    """(frame as a tensor, on its own device, in its dtype; its layout 'hwc', 'chw' or 'bchw')."""
    if isinstance(frame, np.ndarray):
        if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3 or 0 in frame.shape:
            raise ValueError(f"Matter: a NumPy frame must be uint8 RGB [H, W, 3], got {frame.dtype} "
                             f"{list(frame.shape)}")
        return torch.from_numpy(_usable(frame)), "hwc"
    if not torch.is_tensor(frame):
        raise TypeError(f"Matter: a frame must be a NumPy array or a torch tensor, "
                        f"got {type(frame).__name__}")
    shape = tuple(frame.shape)
    layout = None
    if frame.dtype == torch.uint8 or frame.is_floating_point():
        if frame.ndim == 4 and shape[1] == 3:
            layout = "bchw"
        elif frame.ndim == 3 and shape[0] == 3 and shape[2] == 3:
            raise ValueError(f"Matter: a tensor frame {list(shape)} could be HWC or CHW; pass it as "
                             "[1, 3, H, W]")
        elif frame.ndim == 3:
            layout = "hwc" if shape[2] == 3 else "chw" if shape[0] == 3 else None
    if layout is None or 0 in shape:
        raise ValueError(f"Matter: a tensor frame must be uint8 or float, [H, W, 3], [3, H, W] or "
                         f"[B, 3, H, W], got {frame.dtype} {list(shape)}")
    return frame, layout


def _usable(array: np.ndarray) -> np.ndarray:
    """The array itself, or a copy where torch.from_numpy cannot share it (read-only, reversed)."""
    if array.flags.writeable and all(s >= 0 for s in array.strides):
        return array
    return np.array(array)


def _load_state(buffers, state):
    """Copy a recurrent model's `state` (None: zeros) into a graph's static state buffers, on the
    current stream: in order after the replay that wrote it, before the one that reads them."""
    for i, buffer in enumerate(buffers):
        if state is None:
            buffer.zero_()
        elif state[i] is not buffer:  # a model may hand a state tensor back unchanged
            buffer.copy_(state[i])


def _uint8(alpha, layout, instances=False) -> np.ndarray:
    """round(255 alpha) on the device (a quarter of the bytes to copy back), as NumPy [B, H, W]
    for BCHW frames, [H, W] otherwise. An instance model's list of [n_i, H, W] gives a list of
    [H, W] arrays (of [n_i, H, W] arrays, one per image, for BCHW frames)."""
    if instances:
        quantized = [(a.float() * 255).round_().to(torch.uint8).cpu().numpy() for a in alpha]
        return quantized if layout == "bchw" else list(quantized[0])
    quantized = (alpha.float() * 255).round_().to(torch.uint8)[:, 0].cpu().numpy()
    return quantized if layout == "bchw" else quantized[0]


def _instance_mattes(name, mattes, shape):
    """An instance model's predict output checked against its input's `shape` [B, 3, H, W]: a
    list (or tuple) of B tensors [n_i, H, W]; TypeError saying what came instead."""
    b, _, h, w = shape
    if not isinstance(mattes, (list, tuple)) or len(mattes) != b or not all(
            torch.is_tensor(m) and m.ndim == 3 and tuple(m.shape[1:]) == (h, w) for m in mattes):
        got = type(mattes).__name__
        if isinstance(mattes, (list, tuple)):
            got += f" of {[list(m.shape) if torch.is_tensor(m) else type(m).__name__ for m in mattes]}"
        raise TypeError(f"Matter: the instance model {name}'s predict must return a list of {b} tensors "
                        f"[n, {h}, {w}], got {got}")
    return list(mattes)


def _union(mattes, shape):
    """The union matte of an instance model's [n_i, H, W] mattes (frame shape [B, 3, H, W]):
    float32 [B, 1, H, W], the per-pixel max over each image's instances, 0 where it has none."""
    h, w = shape[2:]
    return torch.stack([m.float().amax(0) if m.shape[0] else m.new_zeros((h, w), dtype=torch.float32)
                        for m in mattes]).unsqueeze(1)


def _like_frame(out, layout, like):
    """out [B, C, H, W] (on the device) in the kind and layout of the frame `like`: NumPy
    [H, W, C] for a NumPy frame; for a tensor frame, on its device, HWC [H, W, C], CHW [C, H, W]
    or BCHW as it came."""
    if isinstance(like, np.ndarray):
        return out[0].permute(1, 2, 0).cpu().numpy()
    out = out.to(like.device)
    if layout == "hwc":
        return out[0].permute(1, 2, 0)
    return out[0] if layout == "chw" else out


def _call_options(model, recurrent, options) -> dict:
    """`options` (a mapping, or None) checked against the method Matter calls: a recurrent
    model's forward, else predict. ValueError naming the key it does not take."""
    options = dict(options or {})
    method = model.forward if recurrent else model.predict
    where = f"{type(model).__name__}.{'forward' if recurrent else 'predict'}"
    if recurrent and "state" in options:
        raise ValueError("Matter: call_options cannot set 'state': Matter carries a recurrent model's state "
                         "from frame to frame (reset() starts a new clip)")
    parameters = list(inspect.signature(method).parameters.values())
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return options
    keywords = [p.name for p in parameters[1:]  # the first is the image
                if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
                and not (recurrent and p.name == "state")]
    for key in options:
        if key not in keywords:
            raise ValueError(f"Matter: call_options {key!r} is not an argument of {where} (it takes "
                             f"{', '.join(keywords) or 'none besides the image'})")
    return options


def _bchw(x, layout):
    if layout == "hwc":
        return x.permute(2, 0, 1).unsqueeze(0)
    return x.unsqueeze(0) if layout == "chw" else x


def capture_graph(run):
    """Capture `run()` (a callable reading static input tensors) in a torch.cuda.CUDAGraph.

    It is first run once on a side stream, as capture requires, so that the allocator, library
    handles and compiled kernels are ready; then captured on the current device. Returns
    (graph, output): graph.replay() recomputes `output` in place from the static inputs' current
    values (the next replay overwrites it: copy what must outlive it). Raises what the capture
    raises (e.g. an operation that synchronizes with the host).
    """
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        run()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        output = run()
    return graph, output

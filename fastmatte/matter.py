"""Matter: a matting model ready for pipelines. uint8 frames in, alpha (or a composite) out,
with the GPU kept busy: pinned-memory uploads, CUDA graphs per frame shape, and no waiting on
the GPU except for the result the caller asks for on the host."""
import warnings
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import torch

from fastmatte.models import MODELS, build_model, load_model, load_weights

PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
_KEPT_SHAPES = 4  # CUDA graphs and pinned buffers kept for this many frame shapes (LRU)
_STAGING_SLOTS = 2  # pinned buffers per shape: one is filled while the other is uploading


class RandomWeightsWarning(UserWarning):
    """A Matter built by name without a weights file: its mattes are meaningless, its speed is not."""


@dataclass
class _Graph:
    graph: torch.cuda.CUDAGraph
    input: torch.Tensor  # the static input the graph reads (the frame's layout and dtype)
    alpha: torch.Tensor  # the static output it writes, [B, 1, H, W] in the model's dtype


class Matter:
    """A matting model in eval mode on `device`, in `precision`, called on frames.

    model: a name in fastmatte.models.MODELS ("cra", see `fastmatte info`), built with `config`
      (the model's build arguments, e.g. tile_capacity=0.05 for "cra"), or an nn.Module with
      predict(image) -> alpha [B, 1, H, W] (every zoo model has it), taken as it is (config must
      then be empty; configure the module yourself). Either way the module is moved to device
      and precision in place, put in eval mode, and its parameters stop requiring gradients.
      Frames go through the model's predict: its official inference recipe.
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
      shape runs eagerly, so a folder of differently sized photos costs no captures.

    Frames (every method takes the same):
      NumPy: uint8 RGB [H, W, 3].
      torch: uint8 (0..255) or float (0..1, not checked, which would cost a sync) tensors,
        on any device: [H, W, 3] (HWC), [3, H, W] (CHW) or [B, 3, H, W] (BCHW). A 3-D tensor
        whose first and last sizes are both 3 is ambiguous and refused (pass it as BCHW).
    Results:
      matter(frame): float32 alpha in [0, 1]; NumPy [H, W] for a NumPy frame; for a tensor, a
        tensor on the frame's device, [H, W] for a 3-D frame, [B, 1, H, W] for BCHW.
      alpha_uint8(frame): NumPy uint8 round(255 alpha), [H, W] ([B, H, W] for BCHW).
      alpha_tensor(frame): the model's alpha on `device`, [B, 1, H, W] in the model's dtype,
        without waiting for the GPU (a fresh tensor; the next call does not overwrite it).
      composite(frame, background): uint8 round(alpha fg + (1 - alpha) bg) in the frame's kind
        and layout (NumPy [H, W, 3]; tensors HWC, CHW or BCHW on the frame's device), fg and bg
        in 0..255 (a float frame is scaled by 255, not rounded first).
      alpha_and_composite(frame, background): both of the last two from one run of the model.
    """

    def __init__(self, model="cra", weights=None, device="cpu", precision="fp32", cuda_graph=True,
                 **config):
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
        self.random_weights = weights is None and isinstance(model, str) and not fetched
        if self.random_weights:
            warnings.warn(RandomWeightsWarning(
                f"Matter({model!r}) has random weights (no weights file given): its mattes are meaningless, "
                "though its speed is that of the trained model"), stacklevel=2)
        self.model = module.to(self.device, self.dtype).eval().requires_grad_(False)
        self.cuda_graph = bool(cuda_graph) and self.device.type == "cuda"
        self._graphs = OrderedDict()  # frame key -> _Graph, or None where capture failed
        self._seen = set()  # frame keys run once (eagerly)
        self._staging = OrderedDict()  # (shape, dtype) -> [[pinned buffer, upload event or None], ...]

    @torch.no_grad()
    def __call__(self, frame):
        alpha, _, layout, like = self._infer(frame)
        if isinstance(like, np.ndarray):
            return alpha[0, 0].float().cpu().numpy()
        # A copy: never a graph's output, which the next replay overwrites.
        alpha = alpha.to(like.device, torch.float32, copy=True)
        return alpha if layout == "bchw" else alpha[0, 0]

    @torch.no_grad()
    def alpha_uint8(self, frame) -> np.ndarray:
        alpha, _, layout, _ = self._infer(frame)
        return _uint8(alpha, layout)

    @torch.no_grad()
    def alpha_tensor(self, frame) -> torch.Tensor:
        alpha, _, _, _ = self._infer(frame)
        return alpha.clone()

    @torch.no_grad()
    def composite(self, frame, background=(0, 255, 0)):
        """background: an (r, g, b) colour of ints 0..255, or a uint8 RGB [H, W, 3] image (NumPy
        or tensor) of the frame's size."""
        return self._composite(*self._infer(frame), background)

    @torch.no_grad()
    def alpha_and_composite(self, frame, background=(0, 255, 0)):
        """(alpha_uint8(frame), composite(frame, background)) from one run of the model."""
        alpha, x, layout, like = self._infer(frame)
        return _uint8(alpha, layout), self._composite(alpha, x, layout, like, background)

    def _composite(self, alpha, x, layout, like, background):
        fg = _bchw(x, layout).float()
        if x.dtype != torch.uint8:
            fg = fg * 255
        bg = self._background(background, fg.shape)
        alpha = alpha.float()
        out = (alpha * fg + (1 - alpha) * bg).round_().clamp_(0, 255).to(torch.uint8)
        if isinstance(like, np.ndarray):
            return out[0].permute(1, 2, 0).cpu().numpy()
        out = out.to(like.device)
        if layout == "hwc":
            return out[0].permute(1, 2, 0)
        return out[0] if layout == "chw" else out

    def _infer(self, frame):
        """(alpha [B, 1, H, W] on device, the frame on device as given, its layout, the frame)."""
        t, layout = _as_tensor(frame)
        if self.device.type != "cuda":
            t = t.to(self.device)
            return self.model.predict(self._model_input(t, layout)), t, layout, frame
        with torch.cuda.device(self.device):  # streams and events of this GPU, whichever is current
            key = (tuple(t.shape), t.dtype, layout)
            graph = self._graph_for(key) if self.cuda_graph else None
            if graph is not None:
                self._upload(t, graph.input)
                graph.graph.replay()
                return graph.alpha, graph.input, layout, frame
            x = self._upload(t)
            return self.model.predict(self._model_input(x, layout)), x, layout, frame

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
        self._graphs[key] = self._capture(*key)
        if len(self._graphs) > _KEPT_SHAPES:
            torch.cuda.current_stream(self.device).synchronize()  # the oldest graph may still be running
            self._graphs.popitem(last=False)
        return self._graphs[key]

    def _capture(self, shape, dtype, layout):
        static = torch.zeros(shape, dtype=dtype, device=self.device)
        run = lambda: self.model.predict(self._model_input(static, layout))  # noqa: E731
        try:
            graph, alpha = capture_graph(run)
        except Exception as error:  # capture raises many types; eager still works
            warnings.warn(f"Matter: CUDA graph capture failed for {layout} frames {list(shape)} {dtype} "
                          f"({type(error).__name__}: {error}); running them eagerly", stacklevel=4)
            return None
        return _Graph(graph, static, alpha)

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


def _uint8(alpha, layout) -> np.ndarray:
    """round(255 alpha) on the device (a quarter of the bytes to copy back), as NumPy [B, H, W]
    for BCHW frames, [H, W] otherwise."""
    quantized = (alpha.float() * 255).round_().to(torch.uint8)[:, 0].cpu().numpy()
    return quantized if layout == "bchw" else quantized[0]


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

"""MODNet's workload: one real photograph at H x W, the same for every call, matted end to end by
the official inference recipe, `model.predict(image)`: resized for the network (ZHKKKe: the short
side to 512, multiples of 32, area interpolation; HD and 4K photos run the network at 512 x 896),
the network, the matte resized back.

Input: scikit-image's astronaut photograph, cropped to the frame's aspect ratio and resampled to
H x W (the first frame of RVM's pan clip, fastmatte.bench.workloads.rvm.clip_frames); without
scikit-image, fastmatte's procedural sample portrait, likewise (records: photo).
Weights: random, drawn from a fixed seed (no released MODNet weights are available here; speed
does not depend on their values), the records say so (weights: "random"; "given" for a module
passed in, timed as it is). PyTorch's default initialization leaves a random MobileNetV2's 1/32
features at about 1e-8, where MODNet's InstanceNorm halves blow float32 rounding up some 300x
(onnxruntime's alpha came 5.5e-4 off the eager one at HD, the eager fp32 one 2e-4 off fp64); so
the BatchNorm running statistics are then measured on a photo (one forward pass in training mode,
calibrate_batchnorm), as a trained network's match its data, and every layer works at unit scale:
the backends then agree to about 1e-4, and the comparison checks their computation.
Variant: "zhkkke" (default) or, with model_kwargs variant="paddleseg", PaddleSeg's release and
its recipe (records: variant, and network: the size the network runs at).
Backends: fastmatte = model.predict(image), eager = model.predict(image, backend="torch"),
compile = torch.compile of the eager predict (static shapes), cuda-graph on CUDA = the fastmatte
predict captured once and replayed, and onnxruntime = the eager network exported to ONNX, run by
onnxruntime between the same torch resizes (fastmatte.bench.workloads.modnet_onnxruntime;
records: onnxruntime, its version, None when it is not installed), its alpha compared with the
eager one's within ONNX_TOLERANCE (fp32: it runs in fp32 only).
"""
import functools
from typing import NamedTuple

import torch
from torch import nn

from fastmatte.bench.workloads.base import DIFF_TOLERANCE, Runner, Workload, prepare_model
from fastmatte.bench.workloads.modnet_onnxruntime import OnnxNetwork, OnnxPredict
from fastmatte.bench.workloads.onnx_session import onnxruntime_version
from fastmatte.bench.workloads.rvm import clip_frames
from fastmatte.matter import capture_graph
from fastmatte.models.modnet import paddleseg_sizes, zhkkke_size

CALIBRATION_SIDE = 256  # the square photo whose activations set the BatchNorm statistics
# fp32, max abs: onnxruntime and the eager twin differ by about 1e-4 at HD and 4K on the calibrated
# random weights (8.8e-5 to 1.1e-4 measured, both variants); the eager model itself, fp32 against
# fp64, is 1e-4 off there: plain float32 rounding through the network, nothing tighter to ask
ONNX_TOLERANCE = 5e-4


class PhotoInputs(NamedTuple):
    """image: [1, 3, H, W] in [0, 1] (contiguous, in the model's dtype and device); photo: the
    photograph it comes from; network: "hxw", the size the recipe runs the network at."""

    image: torch.Tensor
    photo: str
    network: str


def photo_image(height, width, device, dtype=torch.float32) -> tuple[torch.Tensor, str]:
    """(the benchmark photo at height x width as [1, 3, H, W] in [0, 1], its name: "astronaut", or
    "sample portrait" without scikit-image)."""
    frames, name = clip_frames(height, width, frames=1)
    image = torch.from_numpy(frames[0]).permute(2, 0, 1)[None] / 255
    return image.to(device, dtype).contiguous(), name


def network_size(variant, height, width) -> tuple[int, int]:
    """The size the variant's recipe runs the network at for a height x width photo."""
    return zhkkke_size(height, width) if variant == "zhkkke" else paddleseg_sizes(height, width)[1]


def calibrate_batchnorm(model: nn.Module, image: torch.Tensor) -> nn.Module:
    """Set every BatchNorm2d's running statistics to those of its input when `model(image, backend=
    "torch")` runs in training mode (the plain average of that one pass: momentum None), the rest
    of the model untouched; returns it in eval mode."""
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    momenta = [m.momentum for m in norms]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None
    model.train()
    with torch.no_grad():
        model(image, backend="torch")
    for norm, momentum in zip(norms, momenta):
        norm.momentum = momentum
    return model.eval()


class MODNetWorkload(Workload):
    """MODNet's predict on a fixed photo (see the module). Records add variant, network, weights,
    photo and onnxruntime."""

    name = "modnet"

    def __init__(self):
        self.weights = None  # "random" or "given" (a module passed in), once prepared
        self.variant = None  # the prepared model's
        self.onnx = None  # OnnxNetwork of the prepared model, made at its first onnxruntime runner

    def describe(self) -> str:
        _, photo = clip_frames(64, 64, frames=1)
        photo = "the astronaut photo" if photo == "astronaut" else \
            "the sample portrait (scikit-image, whose astronaut photo it stands for, is not installed)"
        version = onnxruntime_version()
        ort = f"onnxruntime {version}: the eager network exported to ONNX, intra-op threads " \
              f"{torch.get_num_threads()} (as torch), inter-op 1" if version else "onnxruntime not installed"
        return (f"RANDOM weights from a fixed seed, BatchNorm statistics measured on a photo (no released "
                f"MODNet weights here); input: {photo} at each resolution, every call the same; "
                f"predict: the official recipe's resizes around the network; {ort}")

    def prepare(self, device, dtype, model_kwargs=None, model=None):
        self.weights = "random" if model is None else "given"
        model = prepare_model(self.name, device, dtype, model_kwargs, model)
        if self.weights == "random":
            calibrate_batchnorm(model, photo_image(CALIBRATION_SIDE, CALIBRATION_SIDE, device, dtype)[0])
        self.variant = model.variant
        return model

    def inputs(self, height, width, device, dtype) -> PhotoInputs:
        image, photo = photo_image(height, width, device, dtype)
        network = "x".join(map(str, network_size(self.variant or "zhkkke", height, width)))
        return PhotoInputs(image, photo, network)

    def backends(self, device, compile) -> list[str]:
        return super().backends(device, compile) + ["onnxruntime"]

    def runner(self, model, backend, inputs: PhotoInputs) -> Runner:
        """Every call: predict on the photo, returning {"alpha": [1, 1, H, W]}. "fastmatte" =
        model.predict(image), "eager" = the same with backend="torch", "compile" = torch.compile
        of the eager predict, "cuda-graph" = the fastmatte predict replayed as a CUDA graph (its
        alpha is overwritten by the next replay), "onnxruntime" = OnnxPredict."""
        if backend == "onnxruntime":
            if self.onnx is None or self.onnx.model is not model:
                self.onnx = OnnxNetwork(model)
            return Runner(OnnxPredict(self.onnx, model.variant), [inputs.image])
        if backend == "cuda-graph":
            return Runner(GraphPredict(model), [inputs.image])
        if backend not in ("fastmatte", "eager", "compile"):
            raise ValueError(f"backend must be one of fastmatte, eager, compile, cuda-graph, onnxruntime; "
                             f"got {backend!r}")
        call = model.predict if backend == "fastmatte" else functools.partial(model.predict, backend="torch")
        if backend == "compile":  # static shapes: a graph per resolution, as a fixed-size pipeline has
            call = torch.compile(call, dynamic=False)
        return Runner(lambda image, state: ({"alpha": call(image)}, None), [inputs.image])

    def tolerance(self, backend, precision) -> float:
        return ONNX_TOLERANCE if backend == "onnxruntime" else DIFF_TOLERANCE[precision]

    def figures(self, inputs: PhotoInputs) -> dict:
        return dict(variant=self.variant, network=inputs.network, weights=self.weights, photo=inputs.photo,
                    onnxruntime=onnxruntime_version())


class GraphPredict:
    """Runner's step of the cuda-graph backend: the fastmatte predict on the (fixed) image,
    captured in a CUDA graph at the first call and replayed at every call."""

    def __init__(self, model):
        self.model, self.graph = model, None

    def __call__(self, image, state):
        if self.graph is None:
            self.graph, self.out = capture_graph(lambda: {"alpha": self.model.predict(image)})
        self.graph.replay()
        return self.out, None

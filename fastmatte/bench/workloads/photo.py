"""The workload of a per-image zoo model: one real photograph at H x W, the same for every call,
matted end to end by the model's official inference recipe, `model.predict(image)` (resized for
the network, the network, the matte resized back). MODNet's, PP-Matting's and PP-MattingV2's
workloads are this one with their own network sizes (and MODNet's onnxruntime backend).

Input: scikit-image's astronaut photograph, cropped to the frame's aspect ratio and resampled to
H x W (the first frame of RVM's pan clip, fastmatte.bench.workloads.rvm.clip_frames); without
scikit-image, fastmatte's procedural sample portrait, likewise (records: photo).
Weights: random, drawn from a fixed seed (no released weights of these models can be fetched here;
speed does not depend on their values), the records say so (weights: "random"; "given" for a module
passed in, timed as it is). The BatchNorm running statistics are then measured on a photo and its
mirror image (one forward pass in training mode, calibrate_batchnorm), as a trained network's match
its data, so that every layer works at unit scale (PyTorch's default initialization leaves deep
features near 1e-8, where float32 rounding is all the backends would be compared on).
Backends: fastmatte = model.predict(image), eager = model.predict(image, backend="torch"),
compile = torch.compile of the eager predict (static shapes), cuda-graph on CUDA = the fastmatte
predict captured once and replayed. Records add network (the size the recipe runs the network
at), weights and photo.
"""
import functools
from abc import abstractmethod
from typing import NamedTuple

import torch
from torch import nn

from fastmatte.bench.workloads.base import Runner, Workload, prepare_model
from fastmatte.bench.workloads.rvm import clip_frames
from fastmatte.matter import capture_graph

CALIBRATION_SIDE = 256  # the square photo whose activations set the BatchNorm statistics


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


def describe_photo() -> str:
    """The benchmark photo, in words."""
    _, photo = clip_frames(64, 64, frames=1)
    return "the astronaut photo" if photo == "astronaut" else \
        "the sample portrait (scikit-image, whose astronaut photo it stands for, is not installed)"


class PhotoWorkload(Workload):
    """A per-image model's predict on a fixed photo (see the module). A subclass sets `name`, `title`
    (the model's name in words) and network_size; records add network, weights and photo."""

    title = ""
    backend_names = ("fastmatte", "eager", "compile", "cuda-graph")  # every backend runner() makes

    def __init__(self):
        self.weights = None  # "random" or "given" (a module passed in), once prepared
        self.model = None  # the prepared model

    @abstractmethod
    def network_size(self, model, height, width) -> tuple[int, int]:
        """The size the model's recipe runs the network at for a height x width photo."""

    def describe(self) -> str:
        return (f"RANDOM weights from a fixed seed, BatchNorm statistics measured on a photo (no released "
                f"{self.title} weights here); input: {describe_photo()} at each resolution, every call the "
                f"same; predict: the official recipe's resizes around the network")

    def prepare(self, device, dtype, model_kwargs=None, model=None):
        self.weights = "random" if model is None else "given"
        model = prepare_model(self.name, device, dtype, model_kwargs, model)
        if self.weights == "random":
            photo = photo_image(CALIBRATION_SIDE, CALIBRATION_SIDE, device, dtype)[0]
            # the photo and its mirror image: a batch of two, as BatchNorms over the 1x1 maps of
            # pyramid pooling (PP-Matting's) take in training mode
            calibrate_batchnorm(model, torch.cat([photo, photo.flip(-1)]))
        self.model = model
        return model

    def inputs(self, height, width, device, dtype) -> PhotoInputs:
        image, photo = photo_image(height, width, device, dtype)
        network = "x".join(map(str, self.network_size(self.model, height, width)))
        return PhotoInputs(image, photo, network)

    def runner(self, model, backend, inputs: PhotoInputs) -> Runner:
        """Every call: predict on the photo, returning {"alpha": [1, 1, H, W]}. "fastmatte" =
        model.predict(image), "eager" = the same with backend="torch", "compile" = torch.compile
        of the eager predict, "cuda-graph" = the fastmatte predict replayed as a CUDA graph (its
        alpha is overwritten by the next replay)."""
        if backend == "cuda-graph":
            return Runner(GraphPredict(model), [inputs.image])
        if backend not in ("fastmatte", "eager", "compile"):
            raise ValueError(f"backend must be one of {', '.join(self.backend_names)}; got {backend!r}")
        call = model.predict if backend == "fastmatte" else functools.partial(model.predict, backend="torch")
        if backend == "compile":  # static shapes: a graph per resolution, as a fixed-size pipeline has
            call = torch.compile(call, dynamic=False)
        return Runner(lambda image, state: ({"alpha": call(image)}, None), [inputs.image])

    def figures(self, inputs: PhotoInputs) -> dict:
        return dict(network=inputs.network, weights=self.weights, photo=inputs.photo)


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

"""E2E-HIM's workload: the network on one real photograph, the same for every call.

Input: the benchmark photo (fastmatte.bench.workloads.photo.photo_image: scikit-image's astronaut)
at H x W rounded up to multiples of 32 (the network's stride): 640x640 is the official inference
size; `--res hd` runs the network at 1088x1920. Weights: random, drawn from a fixed seed (the
released swintiny.ckpt cannot be downloaded here; speed does not depend on the values; the model
has GroupNorms only, so nothing is calibrated). Backends: fastmatte = model(image), eager = the
same with backend="torch" (the authors' algorithm), compile = torch.compile of the eager forward,
cuda-graph on CUDA = the fastmatte forward replayed as a CUDA graph. Each backend's "alpha" is
every query's alpha [1, 20, H, W], compared with the eager one. Records add network and photo.
"""
import functools
import math
from typing import NamedTuple

import torch

from fastmatte.bench.workloads.base import Runner, Workload, prepare_model
from fastmatte.bench.workloads.photo import describe_photo, photo_image
from fastmatte.matter import capture_graph

STRIDE = 32


class NetworkInputs(NamedTuple):
    """image: [1, 3, H, W] in [0, 1], H and W multiples of 32; photo: its source's name."""

    image: torch.Tensor
    photo: str


class E2EHIMWorkload(Workload):
    """E2E-HIM's forward on a fixed photo (see the module)."""

    name = "e2ehim"

    def __init__(self):
        self.weights = None  # "random" or "given" (a module passed in), once prepared

    def describe(self) -> str:
        return (f"RANDOM weights from a fixed seed (the released swintiny.ckpt is not here); input: "
                f"{describe_photo()} at each resolution rounded up to multiples of {STRIDE}; every "
                f"call the same; the network's forward, every query's alpha compared")

    def prepare(self, device, dtype, model_kwargs=None, model=None):
        self.weights = "random" if model is None else "given"
        return prepare_model(self.name, device, dtype, model_kwargs, model)

    def inputs(self, height, width, device, dtype) -> NetworkInputs:
        size = [math.ceil(n / STRIDE) * STRIDE for n in (height, width)]
        image, photo = photo_image(*size, device, dtype)
        return NetworkInputs(image, photo)

    def runner(self, model, backend, inputs: NetworkInputs) -> Runner:
        """Every call returns {"alpha": [1, N, H, W]}."""
        if backend == "cuda-graph":
            captured = []

            def replay(image, state):
                if not captured:
                    captured.extend(capture_graph(lambda: {"alpha": model(image)["alpha"]}))
                graph, out = captured
                graph.replay()
                return out, None
            return Runner(replay, [inputs.image])
        if backend not in ("fastmatte", "eager", "compile"):
            raise ValueError(f"backend must be fastmatte, eager, compile or cuda-graph; got {backend!r}")
        call = model if backend == "fastmatte" else functools.partial(model, backend="torch")
        if backend == "compile":
            call = torch.compile(call, dynamic=False)
        return Runner(lambda image, state: ({"alpha": call(image)["alpha"]}, None), [inputs.image])

    def figures(self, inputs: NetworkInputs) -> dict:
        return dict(network="x".join(map(str, inputs.image.shape[-2:])), weights=self.weights,
                    photo=inputs.photo)

"""CRA's workload: one portrait photo, the same for every call, and a fixed trimap.

The input is fastmatte.io.sample's synthetic portrait photo. The weights are random (drawn from a
fixed seed: no pretrained CRA weights are available here), so the model is handed a fixed
trimap on its 1/8 tile grid (fastmatte.bench.cases.portrait_trimap): the refined band, and with
it the work, is the same realistic head-and-shoulders outline for every backend instead of
whatever random weights predict. Speed does not depend on the weights' values. Records add
tiles (refined cells, from the selection's count) and capacity (the selection's rows: on CUDA
the region head runs over all of them, padding included; the official model's default capacity
is the whole 1/8 grid, so give --set tile_capacity=... to bound it there).
"""
import functools
import math
from typing import NamedTuple

import torch

from fastmatte.bench.cases import portrait_trimap
from fastmatte.bench.workloads.base import Runner, Workload, prepare_model
from fastmatte.io.sample import sample_portrait
from fastmatte.matter import capture_graph
from fastmatte.models.cra.model import CELL  # the trimap grid is 1/CELL of the padded image

STRIDE = 128  # the official model pads H and W to multiples of it
# On a GPU the region head runs over every row of the selection's fixed capacity; the official
# default (the whole 1/8 grid) would time mostly padding rows there. The portrait trimap has about
# 7.7% unknown cells at HD/4K, so 15% holds them all, as a video pipeline would size it.
CUDA_CAPACITY = 0.15


class ModelInputs(NamedTuple):
    """One benchmark frame. image: [1, 3, H, W] in [0, 1]; trimap: [1, 3, H_pad/8, W_pad/8]
    logits of a portrait outline (class 1 unknown, the one that chooses the refined cells), both
    in the model's dtype and device."""

    image: torch.Tensor
    trimap: torch.Tensor


def model_inputs(height, width, device, dtype=torch.float32) -> ModelInputs:
    """The benchmark frame at H x W (ints >= 64): fastmatte.io.sample's portrait photo and, on the
    padded size (multiples of 128) the model works at, portrait_trimap's outline (about 5-10%
    unknown tiles at HD/4K)."""
    padded_h, padded_w = (math.ceil(n / STRIDE) * STRIDE for n in (height, width))
    trimap = portrait_trimap(padded_h, padded_w, tile=CELL)
    photo = torch.from_numpy(sample_portrait(height, width)[0]).permute(2, 0, 1)[None]
    return ModelInputs((photo / 255).to(device, dtype), trimap.to(device, dtype))


class CRAWorkload(Workload):
    """CRA on a fixed photo and trimap (see the module), random weights from a fixed seed."""

    name = "cra"
    output_keys = ("tiles", "capacity")

    def describe(self) -> str:
        return ("random weights; the refined band is a fixed portrait trimap, the same for every backend; "
                f"on CUDA tile_capacity={CUDA_CAPACITY} unless given")

    def prepare(self, device, dtype, model_kwargs=None, model=None):
        if torch.device(device).type == "cuda" and model is None:
            model_kwargs = {"tile_capacity": CUDA_CAPACITY} | dict(model_kwargs or {})
        return prepare_model(self.name, device, dtype, model_kwargs, model)

    def inputs(self, height, width, device, dtype) -> ModelInputs:
        return model_inputs(height, width, device, dtype)

    def runner(self, model, backend, inputs: ModelInputs) -> Runner:
        """"fastmatte" = model(image, trimap), "eager" = the same with backend="torch", "compile"
        = torch.compile of the eager forward (compiles on its first call), "cuda-graph" = the
        fastmatte forward captured once in a CUDA graph and replayed (CUDA only; what
        fastmatte.Matter does for a fixed frame size; its output tensors are reused). Every call
        returns the model's output dict (alpha [1, 1, H, W], selection, ...)."""
        call = _forward(model, backend, inputs)
        return Runner(lambda frame, state: (call(), None), [inputs])

    def output_figures(self, out) -> dict:
        # the count is read (a host sync) only after the timing; the inputs are fixed
        return dict(tiles=int(out["selection"].count.sum()), capacity=out["selection"].tiles.shape[0])


def _forward(model, backend, inputs):
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
    raise ValueError(f"backend must be one of fastmatte, eager, compile, cuda-graph; got {backend!r}")

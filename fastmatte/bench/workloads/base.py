"""What a zoo model's workload is to the end-to-end benchmark (fastmatte.bench.model): how its
model is made, its inputs at H x W, one timed call per backend, which alpha is compared across
backends, and the figures its records add. Runner is one backend's timed call over a clip."""
from abc import ABC, abstractmethod

import torch
from torch import nn

from fastmatte.models import build_model

WEIGHTS_SEED = 0
# Largest |alpha - eager alpha| accepted before timing: float32 reordering of sums through a
# network stays near 1e-6; fp16/bf16 carry their rounding (2^-11, 2^-8) through it.
DIFF_TOLERANCE = {"fp32": 1e-3, "fp16": 2e-2, "bf16": 8e-2}


class Runner:
    """One backend running through a clip, as a video pipeline runs it: each call is
    step(frame, state) -> (output dict with "alpha" [B, 1, H, W], new state) on the next of
    `frames` (cycled), from the state the previous call left, and returns that output.
    reset() starts the clip again from state None. A per-image model's clip is its one input,
    its state stays None."""

    def __init__(self, step, frames):
        self.step, self.frames = step, frames
        self.reset()

    def reset(self):
        self.calls, self.state = 0, None

    def __call__(self) -> dict:
        frame = self.frames[self.calls % len(self.frames)]
        self.calls += 1
        out, self.state = self.step(frame, self.state)
        return out


class Workload(ABC):
    """A zoo model as the benchmark times it; a subclass per model sets `name` and implements
    describe, prepare, inputs and runner (the other methods' defaults fit any model).

    check_frames: the calls, from the clip's start, whose alpha every backend must match.
    output_keys: the record keys output_figures reads from a backend's output (None in the
    records of a backend that has no figure).
    """

    name = ""
    check_frames = 1
    output_keys = ()

    @abstractmethod
    def describe(self) -> str:
        """What the command prints about this workload before timing: weights and inputs."""

    @abstractmethod
    def prepare(self, device, dtype, model_kwargs=None, model=None) -> nn.Module:
        """The model to time on the device in dtype, in eval mode: built from model_kwargs, or
        `model` itself (moved in place)."""

    @abstractmethod
    def inputs(self, height, width, device, dtype):
        """The inputs at height x width, in dtype on the device, that every backend is given."""

    @abstractmethod
    def runner(self, model, backend, inputs) -> Runner:
        """The timed call of `backend` (one of self.backends(...)) on the inputs. Anything that
        may fail to set up (a compilation, a capture, a session) happens at its first call."""

    def backends(self, device, compile) -> list[str]:
        """The backends timed on `device`: fastmatte and eager, compile when asked, cuda-graph
        on CUDA."""
        return ["fastmatte", "eager"] + ["compile"] * compile + ["cuda-graph"] * (device.type == "cuda")

    def tolerance(self, backend, precision) -> float:
        """Largest max |alpha - eager alpha| accepted from `backend` in `precision`."""
        return DIFF_TOLERANCE[precision]

    def difference(self, alpha, reference) -> float:
        """How far a backend's alpha is from the eager one's, as checked against tolerance and
        recorded as max_abs_diff_vs_eager: max_abs_diff by default."""
        return max_abs_diff(alpha, reference)

    def figures(self, inputs) -> dict:
        """Figures of every record at these inputs, whichever backend (none by default)."""
        return {}

    def output_figures(self, out) -> dict:
        """Figures read from a backend's output (the keys of output_keys), after its timing."""
        return {}


def max_abs_diff(alpha, reference) -> float:
    """max |alpha - reference| in float32, both [B, 1, H, W]."""
    return (alpha.float() - reference.float()).abs().max().item()


def prepare_model(model_name, device, dtype=torch.float32, model_kwargs=None, model=None,
                  seed=WEIGHTS_SEED) -> nn.Module:
    """build_model(model_name, **model_kwargs) with random weights drawn from `seed` (the same
    weights in every run; the global RNG is left as it was), or the given module (moved in
    place), on the device in dtype, in eval mode."""
    if model is None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = build_model(model_name, **(model_kwargs or {}))
    return model.to(device=device, dtype=dtype).eval()

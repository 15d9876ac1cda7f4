"""The "onnxruntime" backend of MODNet's workload: onnxruntime running an ONNX export of the eager
twin's network, the deployment MODNet's authors ship (ZHKKKe/MODNet's onnx/: export_onnx.py
exports the network with torch.onnx, inference_onnx.py resizes the photo before it and the matte
after it, outside the graph).

The network, `model(image, backend="torch")["alpha"]`, is exported with torch.onnx's TorchScript
exporter (opset 17; the dynamo exporter needs onnxscript, which is optional) once per input shape
the recipe makes (HD and 4K photos both run it at 1 x 3 x 512 x 896), with static shapes, as
torch.compile gets them, to bytes in memory: nothing is written to disk. The recipe's resizes
around it are the eager twin's own torch code (fastmatte.models.modnet.recipe.RECIPES[variant]:
network_input, restore), so that the backend differs from the eager one by the network's runtime
only. The session is made as every onnxruntime backend's is (fastmatte.bench.workloads.onnx_session:
the device's provider, torch's thread count, no busy-waiting); the network's input and output are
torch tensors on the device bound to it (I/O binding). Why it cannot run here (onnxruntime
missing, no CUDA provider, fp16/bf16, an export that fails) is raised as OnnxUnavailable at the
first call, for the benchmark to record.
"""
import io
import warnings

import numpy as np
import torch
from torch import nn

from fastmatte.bench.workloads.onnx_session import OnnxUnavailable, inference_session, onnxruntime_for, place
from fastmatte.models.modnet.recipe import RECIPES

OPSET = 17
GRAPH = "MODNet's ONNX export"


class EagerNetwork(nn.Module):
    """The eager twin's network as a module of one tensor in, one out (what the export traces):
    image [B, 3, h, w] in [0, 1], h and w multiples of 32 -> alpha [B, 1, h, w]."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, image):
        return self.model(image, backend="torch")["alpha"]


def export_network(model, shape: tuple) -> bytes:
    """The ONNX model (serialized) of MODNet's eager network for fp32 images of `shape` (B, 3, h, w),
    traced on the model's device in eval mode (the model's own mode is left as it was)."""
    network = EagerNetwork(model).eval()  # export restores this module's mode, and with it model's
    buffer = io.BytesIO()
    # Tracing needs normal tensors: the benchmark runs under inference_mode. The exporter's
    # warnings are about the legacy exporter itself, Python ints read off traced shapes (the
    # graph is exported per size on purpose) and InstanceNorm's per-image statistics, which
    # ONNX's InstanceNormalization computes as PyTorch does in eval.
    with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        image = torch.zeros(shape, device=model.mean.device)
        torch.onnx.export(network, (image,), buffer, input_names=["image"], output_names=["alpha"],
                          opset_version=OPSET, dynamo=False)
    return buffer.getvalue()


class OnnxNetwork:
    """MODNet's eager network in onnxruntime: one session per input shape (B, 3, h, w), exported
    and opened at its first need, kept for the model's other resolutions."""

    def __init__(self, model):
        self.model = model
        self.sessions = {}

    def session(self, shape: tuple, device: torch.device, dtype):
        if shape not in self.sessions:
            onnxruntime = onnxruntime_for(device, dtype, GRAPH, "to time MODNet's ONNX export")
            try:
                exported = export_network(self.model, shape)
            except Exception as error:
                size = f"{shape[-2]}x{shape[-1]}"
                raise OnnxUnavailable(f"torch.onnx.export of MODNet's eager network at {size} failed: "
                                      f"{type(error).__name__}: {error}") from error
            self.sessions[shape] = inference_session(onnxruntime, exported, device)
        return self.sessions[shape]


class OnnxPredict:
    """Runner's step of the onnxruntime backend: (image [1, 3, H, W] fp32 on the device, state
    None) -> ({"alpha": [1, 1, H, W]}, None), as `model.predict(image, backend="torch")` computes
    it but for the network, which onnxruntime runs (network: OnnxNetwork of that model). The
    network's alpha is a buffer the next call overwrites (and so is the result where the recipe
    keeps the photo's size)."""

    def __init__(self, network: OnnxNetwork, variant: str):
        self.network, self.recipe = network, RECIPES[variant]
        self.outputs = {}  # network input shape -> the network's alpha buffer

    def __call__(self, image, state):
        x = self.recipe.network_input(image, "torch").contiguous()
        session = self.network.session(tuple(x.shape), x.device, x.dtype)
        shape = (x.shape[0], 1, *x.shape[-2:])
        if x.shape not in self.outputs:
            self.outputs[x.shape] = x.new_empty(shape)
        alpha = self.outputs[x.shape]
        binding = session.io_binding()
        binding.bind_input("image", *place(x), np.float32, tuple(x.shape), x.data_ptr())
        binding.bind_output("alpha", *place(alpha), np.float32, shape, alpha.data_ptr())
        session.run_with_iobinding(binding)
        return {"alpha": self.recipe.restore(alpha, image.shape[-2:], "torch")}, None

"""MODNet's workload: the per-image photo workload (fastmatte.bench.workloads.photo: one real
photograph at H x W matted end to end by `model.predict(image)`, random weights with BatchNorm
statistics measured on a photo) with MODNet's recipe sizes (ZHKKKe: the short side to 512,
multiples of 32, area interpolation; HD and 4K photos run the network at 512 x 896) and an
onnxruntime backend. PyTorch's default initialization leaves a random MobileNetV2's 1/32 features at
about 1e-8, where MODNet's InstanceNorm halves blow float32 rounding up some 300x (onnxruntime's
alpha came 5.5e-4 off the eager one at HD, the eager fp32 one 2e-4 off fp64): with the measured
statistics the backends agree to about 1e-4, and the comparison checks their computation.
Variant: "zhkkke" (default) or, with model_kwargs variant="paddleseg", PaddleSeg's release and
its recipe (records: variant, and network: the size the network runs at).
onnxruntime = the eager network exported to ONNX, run by onnxruntime between the same torch resizes
(fastmatte.bench.workloads.modnet_onnxruntime; records: onnxruntime, its version, None when it is
not installed), its alpha compared with the eager one's within ONNX_TOLERANCE (fp32: it runs in
fp32 only).
"""
import torch

from fastmatte.bench.workloads.base import DIFF_TOLERANCE, Runner
from fastmatte.bench.workloads.modnet_onnxruntime import OnnxNetwork, OnnxPredict
from fastmatte.bench.workloads.onnx_session import onnxruntime_version
from fastmatte.bench.workloads.photo import PhotoInputs, PhotoWorkload, calibrate_batchnorm, photo_image
from fastmatte.models.modnet import paddleseg_sizes, zhkkke_size

__all__ = ["MODNetWorkload", "ONNX_TOLERANCE", "calibrate_batchnorm", "photo_image"]

# fp32, max abs: onnxruntime and the eager twin differ by about 1e-4 at HD and 4K on the calibrated
# random weights (8.8e-5 to 1.1e-4 measured, both variants); the eager model itself, fp32 against
# fp64, is 1e-4 off there: plain float32 rounding through the network, nothing tighter to ask
ONNX_TOLERANCE = 5e-4


class MODNetWorkload(PhotoWorkload):
    """MODNet's predict on a fixed photo (see the module). Records add variant, network, weights,
    photo and onnxruntime."""

    name = "modnet"
    title = "MODNet"
    backend_names = PhotoWorkload.backend_names + ("onnxruntime",)

    def __init__(self):
        super().__init__()
        self.variant = None  # the prepared model's
        self.onnx = None  # OnnxNetwork of the prepared model, made at its first onnxruntime runner

    def network_size(self, model, height, width) -> tuple[int, int]:
        variant = self.variant or "zhkkke"
        return zhkkke_size(height, width) if variant == "zhkkke" else paddleseg_sizes(height, width)[1]

    def describe(self) -> str:
        version = onnxruntime_version()
        ort = f"onnxruntime {version}: the eager network exported to ONNX, intra-op threads " \
              f"{torch.get_num_threads()} (as torch), inter-op 1" if version else "onnxruntime not installed"
        return f"{super().describe()}; {ort}"

    def prepare(self, device, dtype, model_kwargs=None, model=None):
        model = super().prepare(device, dtype, model_kwargs, model)
        self.variant = model.variant
        return model

    def backends(self, device, compile) -> list[str]:
        return super().backends(device, compile) + ["onnxruntime"]

    def runner(self, model, backend, inputs: PhotoInputs) -> Runner:
        """PhotoWorkload's runners, and "onnxruntime" = OnnxPredict (the exported eager network
        between the recipe's torch resizes)."""
        if backend == "onnxruntime":
            if self.onnx is None or self.onnx.model is not model:
                self.onnx = OnnxNetwork(model)
            return Runner(OnnxPredict(self.onnx, model.variant), [inputs.image])
        return super().runner(model, backend, inputs)

    def tolerance(self, backend, precision) -> float:
        return ONNX_TOLERANCE if backend == "onnxruntime" else DIFF_TOLERANCE[precision]

    def figures(self, inputs: PhotoInputs) -> dict:
        return dict(variant=self.variant, **super().figures(inputs), onnxruntime=onnxruntime_version())

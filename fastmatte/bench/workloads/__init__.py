"""The workload of each zoo model in the end-to-end benchmark (fastmatte.bench.model): base.py says
what a workload is; cra.py, e2ehim.py and rvm.py are those models'; photo.py is the per-image predict workload
that modnet.py and ppmatting.py (PP-Matting, PP-MattingV2) specialize (rvm_onnxruntime.py and
modnet_onnxruntime.py: the onnxruntime backends, made with onnx_session.py)."""
from fastmatte.bench.workloads.base import Workload
from fastmatte.bench.workloads.cra import CRAWorkload
from fastmatte.bench.workloads.e2ehim import E2EHIMWorkload
from fastmatte.bench.workloads.modnet import MODNetWorkload
from fastmatte.bench.workloads.ppmatting import PPMattingV2Workload, PPMattingWorkload
from fastmatte.bench.workloads.rvm import RVMWorkload

WORKLOADS = {"cra": CRAWorkload, "e2ehim": E2EHIMWorkload, "modnet": MODNetWorkload,
             "ppmatting": PPMattingWorkload, "ppmattingv2": PPMattingV2Workload, "rvm": RVMWorkload}


def workload(model_name) -> Workload:
    """A new workload of the zoo model `model_name` (ValueError naming the ones there are)."""
    if model_name not in WORKLOADS:
        raise ValueError(f"no benchmark workload for model {model_name!r}; there are: {', '.join(WORKLOADS)}")
    return WORKLOADS[model_name]()

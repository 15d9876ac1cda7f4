"""What every "onnxruntime" backend of the model benchmark shares (RVM's released file, MODNet's
export): the checks that onnxruntime can run an fp32 graph on the device, the session made as
the torch backends run (the CPU provider, or on CUDA onnxruntime's CUDA provider; intra-op threads
as torch's, inter-op 1, no busy-waiting), and the placement of torch tensors bound to it (I/O
binding: the graph reads and writes torch's memory on the device, nothing is copied besides
what it computes). Why a backend cannot run is OnnxUnavailable, raised at its first call for the
benchmark to record.
"""
import torch


class OnnxUnavailable(RuntimeError):
    """Why the onnxruntime backend cannot run here."""


def onnxruntime_version():
    """The installed onnxruntime's version, or None when it cannot be imported."""
    try:
        import onnxruntime
    except ImportError:
        return None
    return onnxruntime.__version__


def onnxruntime_for(device: torch.device, dtype, graph: str, purpose: str):
    """The onnxruntime module, checked to run an fp32 ONNX graph on `device` beside torch backends
    in `dtype`; OnnxUnavailable saying why not. graph: the graph as the messages name it ("the
    released ONNX file"); purpose: what installing onnxruntime is for ("to time RVM's released
    ONNX file")."""
    try:
        import onnxruntime
    except ImportError as error:
        raise OnnxUnavailable(f"onnxruntime is not installed: pip install onnxruntime (onnxruntime-gpu for "
                              f"CUDA) {purpose}") from error
    if dtype != torch.float32:
        # the graph is fp32; its times beside fp16/bf16 torch times would not compare like for like
        raise OnnxUnavailable(f"{graph} is fp32: onnxruntime is timed with --precision fp32 only, not "
                              f"{str(dtype).removeprefix('torch.')}")
    if provider(device) not in onnxruntime.get_available_providers():
        raise OnnxUnavailable(f"onnxruntime has no {device.type.upper()} provider here (it has "
                              f"{', '.join(onnxruntime.get_available_providers())}); for CUDA: pip install "
                              f"onnxruntime-gpu")
    return onnxruntime


def provider(device: torch.device) -> str:
    return "CUDAExecutionProvider" if device.type == "cuda" else "CPUExecutionProvider"


def inference_session(onnxruntime, model: bytes, device: torch.device):
    """An onnxruntime.InferenceSession of the serialized ONNX model on `device`, with as many
    intra-op threads as torch uses (torch.get_num_threads()) and one inter-op thread, so that it
    compares like for like with the torch backends. `onnxruntime`: onnxruntime_for's module."""
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.inter_op_num_threads = 1
    # No busy-waiting after a run: the backends take turns call by call, and onnxruntime's
    # spinning threads would otherwise take the cores from the torch call that follows (on 2 cores
    # they slowed fastmatte's RVM from about 125 to 175 ms a frame at HD).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    provider_options = {"device_id": str(device.index or 0)} if device.type == "cuda" else {}
    return onnxruntime.InferenceSession(model, options, providers=[(provider(device), provider_options)])


def place(tensor):
    """(device type, device index) of a tensor, as onnxruntime's binding takes them."""
    return tensor.device.type, tensor.device.index or 0

"""Model weights from local files, through one reader for every official checkpoint format:
safetensors, PyTorch (torch.save), PaddlePaddle .pdparams and ONNX initializers.

Nothing is ever downloaded, and no file can run code: PyTorch files are read with
weights_only=True, .pdparams pickles with an unpickler that builds only NumPy arrays and plain
containers, and safetensors and ONNX files are parsed, never executed."""
import codecs
import collections
import pickle
import re
import stat
import struct
import warnings
import zipfile
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

# Where trainers nest the weights ({"epoch": 3, "state_dict": {...}, "optimizer": {...}}).
STATE_DICT_KEYS = ("state_dict", "model", "model_state_dict", "mat_model", "net", "network", "params")
PADDLE_NAME_TABLE = "StructuredToParameterName@@"  # paddle.save's structured-name -> variable-name table
PADDLE_BUFFERS = (("._mean", ".running_mean"), ("._variance", ".running_var"))  # BatchNorm
DATA_PARALLEL_PREFIX = "module."
TORCH_LEGACY_MAGIC = b"\x8a\x0a" + (0x1950A86A20F9469CFC6C).to_bytes(10, "little")  # pickled LONG1
ONNX_MISSING = ("reading ONNX files needs the onnx package: pip install 'fastmatte[onnx]' "
                "(or pip install onnx)")
EXPECTED = ("expected safetensors, a PyTorch file written by torch.save, a PaddlePaddle .pdparams "
            "or an ONNX model")
FORMAT_NAMES = {
    "safetensors": "a safetensors file",
    "torch-zip": "a PyTorch checkpoint (torch.save zip archive)",
    "torch-legacy": "a legacy PyTorch checkpoint (torch.save without zip)",
    "pdparams": "a pickle (a PaddlePaddle .pdparams file)",
    "onnx": "an ONNX model",
}


class WeightsError(ValueError):
    """A weights file that is missing, unreadable, or does not fit the model."""


def read_state_dict(path) -> dict:
    """The tensors stored in `path`, by name, in file order (safetensors keeps its own, sorted
    order), as CPU tensors.

    The format is chosen by the file's content first and its suffix second:
      safetensors  8-byte little-endian header length, then a JSON header starting with "{"
                   (or the suffix .safetensors).
      PyTorch      a zip archive (PK\\x03\\x04) or a legacy torch.save pickle (it starts with the
                   pickled magic number 0x1950a86a20f9469cfc6c); read with torch.load(...,
                   weights_only=True), which also admits NumPy numbers and numeric arrays here.
                   A pickle that names any global torch does not admit is refused.
      .pdparams    any other pickle (first byte 0x80): PaddlePaddle's pickled dict of NumPy
                   arrays (protocol 2 or 4, written under NumPy 1.x or 2.x), read by an unpickler
                   that admits only what such a dict needs and refuses everything else. Paddle's
                   names become torch's: the "StructuredToParameterName@@" table is dropped, a
                   final "._mean" / "._variance" becomes ".running_mean" / ".running_var"
                   (BatchNorm), and every 2-D array whose name ends in ".weight" is transposed,
                   because Paddle's Linear stores its weight [in, out] and torch's is [out, in].
                   No model fastmatte ports has a 2-D ".weight" that is not a Linear's (an
                   Embedding table would be one: it must not be transposed).
      ONNX         the suffix .onnx (protobuf has no magic): the graph's initializers by name,
                   exactly as stored (a MatMul weight stays [in, out]: layout fixes are the model
                   converters' job). Needs the optional onnx package. Initializers kept in
                   external data files are not read.
    PyTorch and .pdparams checkpoints that nest the weights as training scripts do (under one
    of STATE_DICT_KEYS, beside an epoch or an optimizer) are unwrapped, and a "module." prefix
    on every name (DataParallel) is stripped.

    Raises WeightsError (a ValueError) naming the file and what was expected when the file is
    missing, unreadable, truncated or damaged, of an unknown format, would run code, or does not
    hold a mapping of names to tensors.
    """
    path = Path(path)
    kind = _detect(path)
    if kind == "safetensors":
        return _read_safetensors(path)
    if kind == "onnx":
        return _read_onnx(path)
    if kind == "pdparams":
        state = _state_dict(path, _unpickle_pdparams(path))
        return _strip_data_parallel(path, _paddle_to_torch(path, state))
    state = _state_dict(path, _torch_load(path, kind))
    return _strip_data_parallel(path, state)


def load_weights(module: torch.nn.Module, path, strict: bool = True) -> torch.nn.Module:
    """Load the state dict in `path` (any format read_state_dict reads, in the module's own names)
    into `module` in place and return the module; see load_state_dict for `strict`."""
    return load_state_dict(module, read_state_dict(path), str(path), strict)


def load_state_dict(module: torch.nn.Module, state: dict, source: str, strict: bool = True):
    """Copy `state` into `module` (in place) and return the module.

    Every tensor must have the module's shape, be floating point exactly where the module's is
    (integers in a float weight are a file of another kind, not weights) and hold only finite
    values (NaN or inf weights give NaN mattes, never a useful one). strict: every parameter and
    buffer of the module must be in `state`, and `state` may hold nothing else; a BatchNorm's
    num_batches_tracked counter may be absent (Paddle and older torch files lack it) and keeps
    the module's value, as torch's own load_state_dict does, and a one-element 1-D tensor fills a
    0-D one (torch's rule for files of torch 0.3, which writers that go through NumPy's
    ascontiguousarray also produce). A mismatch raises WeightsError
    naming `source` and listing the names.
    """
    own = module.state_dict()
    state = dict(state)
    for name in own:
        if name.endswith("num_batches_tracked") and name not in state:
            state[name] = own[name]
        elif name in state and own[name].dim() == 0 and tuple(state[name].shape) == (1,):
            state[name] = state[name].reshape(())
    wrong = [f"{k} {tuple(v.shape)} (model {tuple(own[k].shape)})" for k, v in state.items()
             if k in own and v.shape != own[k].shape]
    wrong += [f"{k} {v.dtype} (model {own[k].dtype})" for k, v in state.items()
              if k in own and v.is_floating_point() != own[k].is_floating_point()]
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    problems = wrong + (missing + unexpected if strict else [])
    if problems:
        raise WeightsError(f"{source} does not fit {type(module).__name__}: "
                           + _listing("wrong shape or kind", wrong)
                           + _listing("missing", missing if strict else [])
                           + _listing("unexpected", unexpected if strict else []))
    not_finite = [k for k, v in state.items()
                  if k in own and v.is_floating_point() and not v.isfinite().all()]
    if not_finite:
        raise WeightsError(f"{source}: " + _listing("tensors holding NaN or infinite values", not_finite)
                           + "Weights must be finite: the file is damaged, or comes from a diverged "
                             "training run")
    module.load_state_dict(state, strict=strict)
    return module


def read_metadata(path) -> dict:
    """The string metadata of a safetensors file (what `fastmatte convert` records: the model and
    its configuration); {} for every other format."""
    path = Path(path)
    if _detect(path) != "safetensors":
        return {}
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            return dict(handle.metadata() or {})
    except Exception as error:  # safetensors raises SafetensorError, OSError, ValueError...
        raise _damaged(path, "safetensors", _first_line(error)) from error


def _listing(what, names, shown=8) -> str:
    if not names:
        return ""
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return f"{what}: {', '.join(names[:shown])}{more}. "


# --- format detection ----------------------------------------------------------------------------

def _detect(path: Path) -> str:
    try:
        info = path.stat()
    except FileNotFoundError as error:
        raise WeightsError(f"{path} does not exist") from error
    except OSError as error:
        raise WeightsError(f"{path} cannot be read ({_os_reason(error)})") from error
    if stat.S_ISDIR(info.st_mode):
        raise WeightsError(f"{path} is a directory, not a weights file")
    if not stat.S_ISREG(info.st_mode):
        raise WeightsError(f"{path} is not a regular file, so not a weights file")
    if info.st_size == 0:
        raise WeightsError(f"{path} is empty (0 bytes), not a weights file")
    try:
        with open(path, "rb") as file:
            head = file.read(64)
    except OSError as error:
        raise WeightsError(f"{path} cannot be read ({_os_reason(error)})") from error
    if len(head) >= 9 and head[8:9] == b"{" and 2 <= struct.unpack("<Q", head[:8])[0] <= 100_000_000:
        return "safetensors"
    if head.startswith(b"PK\x03\x04"):
        return "torch-zip"
    if head[:1] == b"\x80":
        return "torch-legacy" if TORCH_LEGACY_MAGIC in head[:32] else "pdparams"
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        return "safetensors"
    if suffix == ".onnx":
        return "onnx"
    raise WeightsError(f"{path} is not a checkpoint fastmatte can read ({EXPECTED}); "
                       f"it starts with {head[:16]!r}")


def _os_reason(error: OSError) -> str:
    if isinstance(error, PermissionError):
        return "permission denied"
    return error.strerror or str(error)


def _damaged(path, kind, detail) -> WeightsError:
    detail = f" ({detail})" if detail else ""
    return WeightsError(f"{path}: could not be read as {FORMAT_NAMES[kind]}; "
                        f"it looks truncated or damaged{detail}")


# --- safetensors -----------------------------------------------------------------------------------

def _read_safetensors(path: Path) -> dict:
    from safetensors.torch import load_file

    try:
        state = load_file(str(path), device="cpu")
    except MemoryError:
        raise
    except Exception as error:  # safetensors raises SafetensorError, OSError, ValueError...
        raise _damaged(path, "safetensors", _first_line(error)) from error
    if not state:
        raise WeightsError(f"{path}: the safetensors file holds no tensors")
    return state


# --- PyTorch ---------------------------------------------------------------------------------------

def _numpy_safe_globals() -> list:
    """What a torch.save pickle of NumPy numbers and numeric arrays names, for weights_only."""
    multiarray = _numpy_multiarray()
    numeric = "?" + np.typecodes["AllInteger"] + np.typecodes["AllFloat"]
    dtype_classes = {type(np.dtype(code)) for code in numeric} - {np.dtype}
    admitted = [multiarray._reconstruct, multiarray.scalar, np.ndarray, np.dtype, *dtype_classes]
    if torch.__version__ >= (2, 6):  # (global, "module.name") pairs: files pickled under NumPy 1.x
        admitted += [(multiarray._reconstruct, "numpy.core.multiarray._reconstruct"),
                     (multiarray.scalar, "numpy.core.multiarray.scalar")]
    return admitted


def _torch_load(path: Path, kind: str):
    safe_globals = getattr(torch.serialization, "safe_globals", None)  # torch >= 2.5
    try:  # an open file, not the path: torch.load hands a path ending in .safetensors to safetensors
        file = open(path, "rb")
    except OSError as error:
        raise WeightsError(f"{path} cannot be read ({_os_reason(error)})") from error
    try:
        with file, warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*TorchScript archive")
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            if safe_globals is None:
                return torch.load(file, map_location="cpu", weights_only=True)
            with safe_globals(_numpy_safe_globals()):
                return torch.load(file, map_location="cpu", weights_only=True)
    except MemoryError:
        raise
    except Exception as error:  # pickle, zip, RuntimeError, EOFError...: all become WeightsError
        message = str(error)
        called = (re.search(r"GLOBAL (\S+) whose module \S+ is blocked", message)
                  or re.search(r"Unsupported global: GLOBAL (\S+) was not an allowed global", message))
        if called:
            name = called.group(1) if "." in called.group(1) else f"builtins.{called.group(1)}"
            raise WeightsError(f"{path}: refused: loading it would run code (its pickle calls {name}); "
                               f"fastmatte never executes code from a weights file") from error
        if "TorchScript" in message:
            raise WeightsError(f"{path} is a TorchScript archive (torch.jit.save), a program rather than "
                               f"weights; fastmatte reads state dicts (torch.save(model.state_dict()))"
                               ) from error
        operand = re.search(r"Unsupported operand (\d+)", message)
        if operand:
            opcode = int(operand.group(1))
            raise WeightsError(f"{path}: {FORMAT_NAMES[kind]} whose pickle uses opcode {opcode:#x}, "
                               f"which torch's weights-only reader does not support: it was written with "
                               f"torch.save(..., pickle_protocol=4 or more), or it is damaged") from error
        if kind == "torch-zip":
            try:
                with zipfile.ZipFile(path) as archive:
                    names = archive.namelist()
            except (zipfile.BadZipFile, OSError, ValueError, EOFError) as zip_error:
                raise _damaged(path, kind, f"not a complete zip archive: {_first_line(zip_error)}") from error
            if not any(n.endswith("data.pkl") for n in names):
                shown = ", ".join(names[:4]) + (", ..." if len(names) > 4 else "")
                raise WeightsError(f"{path} is a zip archive but not a PyTorch checkpoint (no data.pkl; it "
                                   f"holds {shown or 'nothing'}); {EXPECTED}") from error
        raise _damaged(path, kind, _torch_detail(error)) from error


def _torch_detail(error: Exception) -> str:
    """torch's own reason, without its advice to load with weights_only=False."""
    if isinstance(error, EOFError):
        return "unexpected end of file"
    advice = ("weights_only", "Weights only load failed", "documentation", "file an issue",
              "trusted source", "allowlist")
    lines = [line.strip() for line in str(error).splitlines()]
    kept = [line for line in lines if line and not any(word in line for word in advice)]
    detail = kept[0] if kept else type(error).__name__
    detail = detail.split(". ")[0].rstrip(".")
    return detail[:200]


# --- PaddlePaddle .pdparams ------------------------------------------------------------------------

def _numpy_multiarray():
    try:  # NumPy 2 (and 1.26's forward-compatible alias); numpy.core is deprecated there
        import numpy._core.multiarray as multiarray
    except ImportError:  # pragma: no cover - NumPy < 1.26
        import numpy.core.multiarray as multiarray
    return multiarray


def _latin1_encode(text, encoding="utf-8", errors="strict"):
    """_codecs.encode as protocol-2 pickles use it: the raw bytes of an array, as latin-1 text."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError(f"_codecs.encode is admitted only for latin-1 text, got {encoding!r}")
    return codecs.encode(text, "latin1", errors)


def _pdparams_globals() -> dict:
    multiarray = _numpy_multiarray()
    admitted = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype,
                ("_codecs", "encode"): _latin1_encode,
                ("collections", "OrderedDict"): collections.OrderedDict}
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        admitted[(module, "_reconstruct")] = multiarray._reconstruct
        admitted[(module, "scalar")] = multiarray.scalar
    return admitted


class _Refused(pickle.UnpicklingError):
    pass


class _PdparamsUnpickler(pickle.Unpickler):
    """Builds dicts, lists, strings, numbers and NumPy arrays; any other global is refused."""

    def __init__(self, file):
        super().__init__(file, encoding="latin1")  # Python 2 pickles' array bytes, as NumPy needs
        self.admitted = _pdparams_globals()

    def find_class(self, module, name):
        admitted = self.admitted.get((module, name))
        if admitted is None:
            raise _Refused(f"its pickle calls {module}.{name}, which could run code")
        return admitted

    def persistent_load(self, pid):
        raise _Refused("its pickle asks for an external object (a persistent id), which a pickled dict "
                       "cannot need")


def _unpickle_pdparams(path: Path):
    try:
        with open(path, "rb") as file:
            return _PdparamsUnpickler(file).load()
    except _Refused as error:
        raise WeightsError(f"{path}: refused: {error}; a .pdparams file holds only dicts, lists, strings, "
                           f"numbers and NumPy arrays") from error
    except MemoryError:
        raise
    except OSError as error:
        raise WeightsError(f"{path} cannot be read ({_os_reason(error)})") from error
    except Exception as error:  # EOFError, UnpicklingError, ValueError, struct.error...
        detail = "unexpected end of file" if isinstance(error, EOFError) else _first_line(error)
        raise _damaged(path, "pdparams", detail) from error


def _paddle_to_torch(path: Path, state: dict) -> dict:
    out = OrderedDict()
    for name, tensor in state.items():
        for paddle_suffix, torch_suffix in PADDLE_BUFFERS:
            if name.endswith(paddle_suffix):
                name = name[: -len(paddle_suffix)] + torch_suffix
        if tensor.dim() == 2 and name.endswith(".weight"):  # Linear: Paddle [in, out] -> torch [out, in]
            tensor = tensor.t().contiguous()
        if name in out:
            raise WeightsError(f"{path}: two tensors are both named {name!r} once Paddle's names become "
                               f"torch's")
        out[name] = tensor
    return out


# --- ONNX ------------------------------------------------------------------------------------------

def _read_onnx(path: Path) -> dict:
    try:
        import onnx
        from onnx import numpy_helper
        from onnx.external_data_helper import uses_external_data
    except ImportError as error:
        raise WeightsError(f"{path}: {ONNX_MISSING}") from error
    try:
        model = onnx.load(str(path), load_external_data=False)
    except MemoryError:
        raise
    except Exception as error:  # google.protobuf DecodeError and friends
        raise _damaged(path, "onnx", _first_line(error)) from error
    if not model.ir_version or not model.HasField("graph"):
        raise WeightsError(f"{path} is not an ONNX model, or a damaged one (no graph); {EXPECTED}")
    state = OrderedDict()
    for initializer in model.graph.initializer:
        name = initializer.name
        if uses_external_data(initializer):
            raise WeightsError(f"{path}: initializer {name!r} keeps its data in a separate file (ONNX "
                               f"external data), which fastmatte does not read; save the model as one file")
        if name in state:
            raise WeightsError(f"{path}: two initializers are named {name!r}")
        try:
            array = numpy_helper.to_array(initializer)
        except MemoryError:
            raise
        except Exception as error:
            raise _damaged(path, "onnx", f"initializer {name!r}: {_first_line(error)}") from error
        state[name] = _array_to_tensor(path, name, array)
    if not state:
        raise WeightsError(f"{path}: the ONNX model holds no initializers (no stored weights to read)")
    return state


# --- shared ----------------------------------------------------------------------------------------

def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return (text.splitlines()[0] if text else type(error).__name__)[:200]


def _is_array(value) -> bool:
    return torch.is_tensor(value) or isinstance(value, np.ndarray)


def _state_dict(path: Path, obj) -> dict:
    """Unwrap a trainer's checkpoint and check that it maps names to tensors (made from arrays)."""
    while isinstance(obj, Mapping) and obj and not any(_is_array(v) for v in obj.values()):
        nested = next((obj[k] for k in STATE_DICT_KEYS if isinstance(obj.get(k), Mapping)), None)
        if nested is None:
            break
        obj = nested
    expected = "expected a mapping of names to tensors (a state dict)"
    if not isinstance(obj, Mapping):
        raise WeightsError(f"{path}: {expected}, but the file holds a {type(obj).__name__} object")
    state = OrderedDict()
    for key, value in obj.items():
        if key == PADDLE_NAME_TABLE:
            continue
        if not isinstance(key, str):
            raise WeightsError(f"{path}: {expected}, but it has the key {key!r} of type {type(key).__name__}")
        if torch.is_tensor(value):
            state[key] = value.detach() if value.requires_grad else value
        elif isinstance(value, (np.ndarray, np.generic)):
            state[key] = _array_to_tensor(path, key, value)
        else:
            nested = (f"; nested weights are found only under one of {', '.join(STATE_DICT_KEYS)}"
                      if any(isinstance(v, Mapping) for v in obj.values()) else "")
            raise WeightsError(f"{path}: {expected}, but {key!r} holds a {type(value).__name__} object"
                               + nested)
    if not state:
        raise WeightsError(f"{path}: holds no tensors; {expected}")
    metadata = getattr(obj, "_metadata", None)  # torch's module versions (e.g. BatchNorm's)
    if isinstance(metadata, dict):
        state._metadata = metadata
    return state


def _strip_data_parallel(path: Path, state: OrderedDict) -> OrderedDict:
    if not all(key.startswith(DATA_PARALLEL_PREFIX) for key in state):
        return state
    cut = len(DATA_PARALLEL_PREFIX)
    out = OrderedDict((key[cut:], value) for key, value in state.items())
    metadata = getattr(state, "_metadata", None)
    if isinstance(metadata, dict):
        out._metadata = OrderedDict(("" if k == "module" else k[cut:], v) for k, v in metadata.items()
                                    if k == "module" or k.startswith(DATA_PARALLEL_PREFIX))
    return out


def _ml_dtypes() -> dict:
    """NumPy extension dtypes (ml_dtypes, which onnx uses) -> (same-size integer view, torch dtype)."""
    pairs = {"bfloat16": (np.int16, "bfloat16"), "float8_e4m3fn": (np.uint8, "float8_e4m3fn"),
             "float8_e4m3fnuz": (np.uint8, "float8_e4m3fnuz"), "float8_e5m2": (np.uint8, "float8_e5m2"),
             "float8_e5m2fnuz": (np.uint8, "float8_e5m2fnuz")}
    return {k: (view, getattr(torch, name)) for k, (view, name) in pairs.items() if hasattr(torch, name)}


def _array_to_tensor(path: Path, key: str, array) -> torch.Tensor:
    """A writable CPU tensor holding a copy of a numeric NumPy array (or number)."""
    array = np.asarray(array)
    special = _ml_dtypes().get(array.dtype.name)
    if special is not None and array.dtype.itemsize == np.dtype(special[0]).itemsize:
        view, dtype = special
        return torch.from_numpy(np.array(array, order="C", copy=True).view(view)).view(dtype)
    if array.dtype.kind not in "biufc":
        raise WeightsError(f"{path}: {key!r} is an array of {array.dtype} (kind {array.dtype.kind!r}), not "
                           f"of numbers; expected a mapping of names to numeric tensors")
    if not array.dtype.isnative:
        array = array.astype(array.dtype.newbyteorder("="))
    try:
        return torch.from_numpy(np.array(array, order="C", copy=True))
    except TypeError as error:  # e.g. long double
        raise WeightsError(f"{path}: {key!r} has dtype {array.dtype}, which torch has no tensor type for"
                           ) from error

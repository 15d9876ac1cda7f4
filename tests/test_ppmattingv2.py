"""PP-MattingV2 against PaddleSeg's release: the oracle in tests/data/ppmattingv2_stdc1 (copied from
../shared/oracles) rebuilds an official ppmattingv2-stdc1-human_512.pdparams and holds the official
code's outputs on a real photo. The file is written in the official format and loaded through
load_model and the command line as a user would."""
from pathlib import Path

import numpy as np
import pytest
import torch

from fastmatte.cli import main
from fastmatte.io import read_matte, write_image
from fastmatte.models import PPMattingV2, WeightsError, build_model, load_model, read_state_dict
from helpers import check_inference_path_equals_eager_twin
from oracle_weights import load_manifest, write_checkpoint

DATA = Path(__file__).parent / "data"
TOLERANCE = 1e-4  # fp32, max abs difference relative to the largest official value
BACKENDS = ["torch", None]  # the eager twin and fastmatte's inference path


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    """(path of the official-format checkpoint, the official outputs)."""
    path = tmp_path_factory.mktemp("ppmattingv2") / "ppmattingv2-stdc1-human_512.pdparams"
    write_checkpoint(load_manifest(DATA / "ppmattingv2_stdc1"), path)
    with np.load(DATA / "ppmattingv2_stdc1" / "expected.npz") as z:
        return path, {k: torch.from_numpy(z[k]) for k in z.files}


def close(actual, expected, tolerance=TOLERANCE):
    assert actual.shape == expected.shape
    error = ((actual.float() - expected.float()).abs().max() / expected.abs().max()).item()
    assert error <= tolerance, error


def taps(model):
    """The intermediate maps the oracle records, filled by forward hooks on each run."""
    seen = {}
    model.backbone.register_forward_hook(lambda m, i, out: seen.__setitem__("backbone_feat4", out[4]))
    model.dpp.register_forward_hook(lambda m, i, out: seen.__setitem__("dpp_out", out))
    model.mlff8x.register_forward_hook(lambda m, i, out: seen.__setitem__("mlff8x_out", out))
    return seen


@pytest.mark.parametrize("backend", BACKENDS)
def test_release_gives_the_official_outputs(release, backend):
    path, expected = release
    model = load_model("ppmattingv2", weights=path).eval()
    seen = taps(model)
    assert torch.equal((expected["image"] - 0.5) / 0.5, expected["net_input"])  # what forward feeds
    with torch.no_grad():
        close(model(expected["image"], backend=backend)["alpha"], expected["alpha"])
        for key in ("backbone_feat4", "dpp_out", "mlff8x_out"):
            close(seen[key], expected[key])
        seen.clear()
        close(model.predict(expected["image"], backend=backend), expected["alpha"])
        close(seen["dpp_out"], expected["dpp_out"])


def test_the_training_head_is_in_the_file_and_loads(release):
    path, expected = release
    official = read_state_dict(path)
    model = load_model("ppmattingv2", weights=path).eval()
    ours = model.state_dict()
    assert torch.equal(ours["matting_head_mlff8x.conv._conv.weight"],
                       official["matting_head_mlff8x.conv._conv.weight"])
    assert torch.equal(ours["matting_head_mlff8x.conv_out.weight"],
                       official["matting_head_mlff8x.conv_out.weight"])
    with torch.no_grad():
        out = model(expected["image"], aux=True)
        eager = model(expected["image"], aux=True, backend="torch")
    assert out["alpha_8x"].shape == (1, 1, 40, 32)
    close(out["alpha_8x"], eager["alpha_8x"])


def test_training_mode_gives_alpha_8x_and_gradients():
    model = build_model("ppmattingv2").train()
    out = model(torch.rand(2, 3, 128, 96))
    assert set(out) == {"alpha", "alpha_8x"}
    assert out["alpha"].shape == (2, 1, 128, 96) and out["alpha_8x"].shape == (2, 1, 16, 12)
    (out["alpha"].mean() + out["alpha_8x"].mean()).backward()
    assert all(p.grad is not None for p in model.parameters())


def test_inference_path_equals_the_eager_twin():
    model = build_model("ppmattingv2")
    image = check_inference_path_equals_eager_twin(model)
    image.requires_grad_(True)  # eval with gradients: the inference path still differentiates
    model(image)["alpha"].sum().backward()
    assert image.grad is not None


def test_predict_follows_limit_short_and_multiples_of_32():
    model = build_model("ppmattingv2").eval()
    sizes = []
    model.backbone.register_forward_hook(lambda m, inputs, out: sizes.append(tuple(inputs[0].shape[-2:])))
    with torch.no_grad():
        assert model.predict(torch.rand(1, 3, 600, 700)).shape == (1, 1, 600, 700)
        assert model.predict(torch.rand(1, 3, 100, 70)).shape == (1, 1, 100, 70)
        model.predict(torch.rand(1, 3, 600, 700), max_short=256)
        assert PPMattingV2(max_short=320).max_short == 320
    # LimitShort(512): short 600 -> 512, 700 -> round(597.33) = 597; then floored to multiples of 32
    assert sizes == [(512, 576), (96, 64), (256, 288)]


def test_a_converted_file_loads_back(release, tmp_path, capsys):
    path, expected = release
    out = tmp_path / "ppmattingv2.safetensors"
    assert main(["convert", "ppmattingv2", str(path), str(out)]) == 0
    torch.save(load_model("ppmattingv2", weights=path).state_dict(), tmp_path / "own.pt")
    for file in (out, tmp_path / "own.pt"):
        model = load_model("ppmattingv2", weights=file).eval()
        with torch.no_grad():
            close(model(expected["image"])["alpha"], expected["alpha"])


def test_a_missing_tensor_is_named(release, tmp_path):
    state = read_state_dict(release[0])
    del state["mlff4x.conv_atten.1._conv.weight"]
    torch.save(state, tmp_path / "broken.pt")
    with pytest.raises(WeightsError, match=r"broken\.pt.*missing.*mlff4x\.conv_atten\.1\._conv\.weight"):
        load_model("ppmattingv2", weights=tmp_path / "broken.pt")


def test_other_models_checkpoints_are_refused_naming_the_model(release, tmp_path):
    modnet = write_checkpoint(load_manifest(DATA / "modnet_mobilenetv2_paddle"), tmp_path / "modnet.pdparams")
    with pytest.raises(WeightsError, match=r"modnet\.pdparams is not a 'ppmattingv2' checkpoint.*'modnet'"):
        load_model("ppmattingv2", weights=modnet)
    with pytest.raises(WeightsError, match=r"not a 'modnet' checkpoint.*'ppmattingv2'"):
        load_model("modnet", weights=release[0])
    ppmatting = write_checkpoint(load_manifest(DATA / "ppmatting_hrnet_w18"), tmp_path / "ppmatting.pdparams")
    with pytest.raises(WeightsError,
                       match=r"ppmatting\.pdparams is not a 'ppmattingv2' checkpoint.*PP-Matting \(HRNet\)"):
        load_model("ppmattingv2", weights=ppmatting)


@pytest.mark.parametrize("image, message", [
    (torch.rand(3, 64, 64), r"\[B, 3, H, W\]"),
    (torch.rand(1, 3, 64, 70), r"multiples of 32.*predict"),
    (torch.rand(1, 3, 64, 64, dtype=torch.float64), "float64"),
    (torch.full((1, 3, 64, 64), float("nan")), "NaN"),
])
def test_bad_images_are_refused(image, message):
    with pytest.raises(ValueError, match=message):
        build_model("ppmattingv2").eval()(image)


def test_bad_arguments_are_refused():
    model = build_model("ppmattingv2").eval()
    with pytest.raises(ValueError, match="backend must be"):
        model(torch.rand(1, 3, 64, 64), backend="onnx")
    with pytest.raises(ValueError, match="backbone must be one of 'stdc1'"):
        PPMattingV2(backbone="stdc2")
    with pytest.raises(ValueError, match="max_short must be an int >= 32"):
        model.predict(torch.rand(1, 3, 64, 64), max_short=0)
    with pytest.raises(ValueError, match="sides must reach 32"):
        model.predict(torch.rand(1, 3, 20, 2000))


def test_command_line_mattes_a_photo_with_the_release(release, tmp_path):
    path, expected = release
    photo = torch.round(expected["image"][0] * 255).to(torch.uint8).permute(1, 2, 0).numpy()
    write_image(tmp_path / "photo.png", photo)
    assert main(["matte", str(tmp_path / "photo.png"), "--model", "ppmattingv2", "--weights", str(path),
                 "-o", str(tmp_path / "out")]) == 0
    alpha = read_matte(tmp_path / "out" / "photo_alpha.png")
    assert np.abs(alpha.astype(np.float32) / 255 - expected["alpha"][0, 0].numpy()).max() <= 0.5 / 255 + 1e-4

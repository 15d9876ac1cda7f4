"""PP-Matting (PaddleSeg, HRNet-W18) against the official code's outputs: the oracle in
tests/data/ppmatting_hrnet_w18 (copied from ../shared/oracles), a manifest that rebuilds the
official .pdparams and PaddleSeg's outputs on a real photo. The checkpoint is written in the
official format and loaded through load_model and the command line as a user would, and both the
fused inference path and the eager twin are checked against the oracle."""
from pathlib import Path

import numpy as np
import pytest
import torch

from fastmatte.cli import main
from fastmatte.io import read_matte, write_image
from fastmatte.models import PPMatting, WeightsError, build_model, load_model, read_state_dict
from fastmatte.models import paddleseg_transforms as transforms
from fastmatte.models.ppmatting import convert_official
from oracle_weights import expected_tensors, load_manifest, write_checkpoint

DATA = Path(__file__).parent / "data"
RTOL = 1e-4  # max abs difference / max abs value, fp32
ALPHA_TOL = 1e-4  # where the semantic margin exceeds MARGIN (elsewhere a float tie may flip the class)
MARGIN = 1e-3
BACKENDS = ["torch", None]  # the eager twin and fastmatte's inference path


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    """(path of the official-format .pdparams, PaddleSeg's outputs, the model loaded from it)."""
    path = tmp_path_factory.mktemp("ppmatting") / "ppmatting-hrnet_w18-human_512.pdparams"
    write_checkpoint(load_manifest(DATA / "ppmatting_hrnet_w18"), path)
    return path, expected_tensors(DATA / "ppmatting_hrnet_w18"), load_model("ppmatting", weights=path).eval()


def relative(actual, expected):
    assert actual.shape == expected.shape
    return ((actual.float() - expected).abs().max() / expected.abs().max()).item()


def alpha_close(alpha, expected):
    confident = expected["semantic_margin"] > MARGIN
    assert alpha.shape == expected["alpha"].shape
    error = (alpha - expected["alpha"])[confident].abs().max().item()
    assert error <= ALPHA_TOL, error


@pytest.mark.parametrize("backend", BACKENDS)
def test_release_gives_the_official_outputs(release, backend):
    path, expected, model = release
    assert model.backbone_name == "hrnet_w18" and model.max_short == 512
    captured = {}
    hooks = [model.backbone.register_forward_hook(lambda m, i, out: captured.setdefault("backbone", out)),
             model.scb.register_forward_hook(lambda m, i, out: captured.setdefault("scb", out))]
    try:
        with torch.no_grad():
            out = model(expected["image"], aux=True, backend=backend)
            alone = model(expected["image"], backend=backend)
            predicted = model.predict(expected["image"], backend=backend)
    finally:
        for hook in hooks:
            hook.remove()
    assert set(out) == {"alpha", "semantic", "detail"} and set(alone) == {"alpha"}
    checks = {"semantic_logits": out["semantic"], "detail": out["detail"],
              "backbone_feat3": captured["backbone"][3], "backbone_feat4": captured["backbone"][4],
              "scb_logit0": captured["scb"][0]}
    for key, actual in checks.items():
        assert relative(actual, expected[key]) <= RTOL, key
    for alpha in (out["alpha"], alone["alpha"], predicted):
        alpha_close(alpha, expected)


def sizes_of(height, width, max_short):
    return transforms.limit_short_sizes(height, width, max_short, "PPMatting")


def test_the_network_input_is_the_official_one(release):
    _, expected, _ = release
    sizes = sizes_of(320, 256, 512)
    net_input = transforms.network_input(expected["image"], sizes)
    assert torch.equal((net_input - 0.5) / 0.5, expected["net_input"])


def test_predict_sizes_follow_the_released_configs(release):
    assert sizes_of(1080, 1920, 512) == ((512, 910), (512, 896))
    assert sizes_of(1080, 1920, 1024) == ((1024, 1820), (1024, 1792))
    assert sizes_of(1080, 1920, 1536) == ((1080, 1920), (1056, 1920))
    assert sizes_of(300, 250, 512) == ((300, 250), (288, 224))
    path, expected, model = release
    assert load_model("ppmatting", weights=path, max_short=1024).max_short == 1024
    image = expected["image"]
    with torch.no_grad():  # a per-call max_short: LimitShort(128) makes 160x128, then back to 320x256
        small = model.predict(image, max_short=128)
        sizes = sizes_of(320, 256, 128)
        assert sizes == ((160, 128), (160, 128))
        alpha = model(transforms.network_input(image, sizes))["alpha"]
        by_hand = transforms.restore(alpha, sizes, (320, 256))
    assert small.shape == (1, 1, 320, 256)
    assert torch.equal(small, by_hand)


def test_predict_of_any_size_agrees_between_the_paths(release):
    _, expected, model = release
    image = torch.nn.functional.interpolate(expected["image"], size=(300, 250), mode="bilinear")
    with torch.no_grad():
        fused, eager = model.predict(image), model.predict(image, backend="torch")
    assert fused.shape == (1, 1, 300, 250)
    # a few pixels may sit on a semantic tie, where the class can differ by a float rounding
    assert ((fused - eager).abs() > 1e-4).float().mean().item() < 2e-3


def test_training_mode_gives_every_head_and_gradients(release):
    path, expected, _ = release
    model = load_model("ppmatting", weights=path).train()
    image = torch.cat([expected["image"][..., :128, :128], expected["image"][..., 128:256, 128:]])
    out = model(image)
    assert set(out) == {"alpha", "semantic", "detail"}
    assert out["semantic"].shape == (2, 3, 128, 128) and out["detail"].shape == (2, 1, 128, 128)
    index = out["semantic"].argmax(1, keepdim=True)  # the official fusion, differentiable in detail
    assert torch.equal(out["alpha"], out["detail"] * (index == 1) + (index == 0))
    (out["alpha"].mean() + out["semantic"].logsumexp(1).mean() + out["detail"].mean()).backward()
    # The last HRNet module's fuse rows 1 and 2 make the 1/8 and 1/16 maps, which PP-Matting
    # does not use (official): only they get no gradient.
    unused = ("backbone.stage4.2.fuse.1.", "backbone.stage4.2.fuse.2.")
    for name, parameter in model.named_parameters():
        if name.startswith(unused):
            assert parameter.grad is None, name
        else:
            assert parameter.grad is not None and parameter.grad.isfinite().all(), name
    assert model.hrdb.detail_conv.weight.grad.abs().sum() > 0


def test_the_inference_path_is_differentiable(release):
    _, expected, model = release
    image = expected["image"][..., :128, :128].clone().requires_grad_()
    out = model(image, aux=True)  # eval mode, grad enabled: the fused ops' backward
    (out["alpha"].mean() + out["detail"].mean()).backward()
    assert image.grad.isfinite().all() and image.grad.abs().sum() > 0
    assert model.hrdb.gates[0].conv.weight.grad.isfinite().all()
    model.zero_grad(set_to_none=True)


def test_hrnet_w48_build_has_the_released_widths():
    model = build_model("ppmatting", backbone="hrnet_w48").eval()
    assert model.backbone.feat_channels == [64, 48, 96, 192, 384]
    state = model.state_dict()
    assert state["hrdb.res_list.0.short._conv.weight"].shape == (64, 112, 1, 1)
    assert state["scb.psp_module.conv_bn_relu2._conv.weight"].shape == (512, 1536, 3, 3)
    assert state["scb.scb_stages.0.0._conv.weight"].shape == (512, 896, 3, 3)
    assert convert_official(state).config == {"backbone": "hrnet_w48"}
    with torch.no_grad():
        out = model(torch.rand(1, 3, 64, 64), aux=True)
    assert out["alpha"].shape == (1, 1, 64, 64) and out["semantic"].shape == (1, 3, 64, 64)


def test_the_release_converts_with_its_backbone_and_loads_back(release, tmp_path):
    path, expected, model = release
    conversion = convert_official(read_state_dict(path))
    assert conversion.config == {"backbone": "hrnet_w18"} and "PaddleSeg" in conversion.layout
    torch.save(model.state_dict(), tmp_path / "own.pt")
    assert main(["convert", "ppmatting", str(path), str(tmp_path / "human_1024.safetensors"),
                 "--set", "max_short=1024"]) == 0
    for file, max_short in (("own.pt", 512), ("human_1024.safetensors", 1024)):
        again = load_model("ppmatting", tmp_path / file).eval()
        assert again.backbone_name == "hrnet_w18" and again.max_short == max_short
        for (name, a), b in zip(again.state_dict().items(), model.state_dict().values()):
            assert torch.equal(a, b), name


def test_a_release_with_a_missing_tensor_names_it(release, tmp_path):
    state = read_state_dict(release[0])
    del state["backbone.st4.stage_st4_3.fuse_func.residual_st4_3_layer_1_4._conv.weight"]
    del state["hrdb.gates.1._gate_conv.3.weight"]
    torch.save(state, tmp_path / "broken.pt")
    with pytest.raises(WeightsError, match=r"missing.*backbone\.stage4\.2\.fuse\.0\.3\.conv\.weight"):
        load_model("ppmatting", tmp_path / "broken.pt")
    with pytest.raises(WeightsError, match=r"missing.*hrdb\.gates\.1\._gate_conv\.3\.weight"):
        load_model("ppmatting", tmp_path / "broken.pt")


def test_other_paddleseg_matting_files_are_refused_naming_the_model(release, tmp_path):
    v2 = write_checkpoint(load_manifest(DATA / "ppmattingv2_stdc1"), tmp_path / "ppmattingv2-stdc1.pdparams")
    with pytest.raises(WeightsError, match=r"ppmattingv2-stdc1\.pdparams is not a 'ppmatting' checkpoint"):
        load_model("ppmatting", v2)
    modnet = write_checkpoint(load_manifest(DATA / "modnet_mobilenetv2_paddle"), tmp_path / "modnet.pdparams")
    with pytest.raises(WeightsError, match=r"not a 'ppmatting' checkpoint.*'modnet'"):
        load_model("ppmatting", modnet)
    with pytest.raises(WeightsError, match=r"not a 'modnet' checkpoint.*'ppmatting'"):
        load_model("modnet", release[0])


@pytest.mark.parametrize("image, message", [
    (torch.rand(3, 64, 64), r"\[B, 3, H, W\]"),
    (torch.rand(1, 3, 64, 70), r"multiples of 32.*predict"),
    (torch.full((1, 3, 64, 64), float("nan")), "NaN"),
    (torch.rand(1, 3, 64, 64, dtype=torch.float64), "float64"),
])
def test_bad_images_are_refused(release, image, message):
    with pytest.raises(ValueError, match=message):
        release[2](image)


def test_bad_arguments_are_refused(release):
    model = release[2]
    with pytest.raises(ValueError, match="backbone must be one of"):
        PPMatting(backbone="hrnet_w32")
    with pytest.raises(ValueError, match="max_short must be an int"):
        model.predict(torch.rand(1, 3, 64, 64), max_short=0)
    with pytest.raises(ValueError, match="backend must be"):
        model(torch.rand(1, 3, 64, 64), backend="onnx")
    with pytest.raises(ValueError, match="sides must reach 32"):
        model.predict(torch.rand(1, 3, 20, 2000))


def test_command_line_mattes_a_photo(release, tmp_path):
    path, expected, _ = release
    photo = torch.round(expected["image"][0] * 255).to(torch.uint8).permute(1, 2, 0).numpy()
    write_image(tmp_path / "photo.png", photo)
    assert main(["matte", str(tmp_path / "photo.png"), "--model", "ppmatting", "--weights", str(path),
                 "-o", str(tmp_path / "out")]) == 0
    alpha = torch.from_numpy(read_matte(tmp_path / "out" / "photo_alpha.png").astype(np.float32) / 255)
    confident = expected["semantic_margin"][0, 0] > MARGIN
    error = (alpha - expected["alpha"][0, 0])[confident].abs().max().item()
    assert error <= 0.5 / 255 + ALPHA_TOL

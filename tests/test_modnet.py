"""MODNet against both official releases' outputs: the oracles in tests/data/modnet (ZHKKKe/MODNet,
PyTorch) and tests/data/modnet_mobilenetv2_paddle (PaddleSeg), each a manifest that rebuilds an
official-format checkpoint and the official code's outputs on a real photo (copied from
../shared/oracles). The checkpoints are written in the official formats and loaded through
load_model, Matter and the command line as a user would."""
from pathlib import Path

import numpy as np
import pytest
import torch

from fastmatte import Matter
from fastmatte.cli import main
from fastmatte.io import read_matte, write_image
from fastmatte.models import MODNet, WeightsError, build_model, cra, load_model, read_state_dict
from fastmatte.models.modnet import paddleseg_sizes, zhkkke_size
from fastmatte.models.modnet.recipe import RECIPES
from helpers import check_inference_path_equals_eager_twin
from oracle_weights import expected_tensors, load_manifest, write_checkpoint

DATA = Path(__file__).parent / "data"
TOLERANCE = 1e-4  # fp32, max abs (the oracle notes: same op order agrees to ~1e-6)
BACKENDS = ["torch", None]  # the eager twin and fastmatte's inference path


@pytest.fixture(scope="module")
def zhkkke(tmp_path_factory):
    """(path of an official-format ZHKKKe checkpoint (DataParallel keys, backbone twice), outputs)."""
    path = tmp_path_factory.mktemp("modnet") / "modnet_photographic_portrait_matting.ckpt"
    write_checkpoint(load_manifest(DATA / "modnet"), path)
    return path, expected_tensors(DATA / "modnet")


@pytest.fixture(scope="module")
def paddleseg(tmp_path_factory):
    path = tmp_path_factory.mktemp("modnet") / "modnet-mobilenetv2.pdparams"
    write_checkpoint(load_manifest(DATA / "modnet_mobilenetv2_paddle"), path)
    return path, expected_tensors(DATA / "modnet_mobilenetv2_paddle")


def close(actual, expected, tolerance=TOLERANCE):
    assert actual.shape == expected.shape
    error = (actual.float() - expected.float()).abs().max().item()
    assert error <= tolerance, error


@pytest.mark.parametrize("backend", BACKENDS)
def test_zhkkke_release_gives_the_official_outputs(zhkkke, backend):
    path, expected = zhkkke
    model = load_model("modnet", path).eval()
    assert model.variant == "zhkkke"
    with torch.no_grad():
        out = model(expected["image"], aux=True, backend=backend)
        close(out["alpha"], expected["matte"])
        close(out["semantic"], expected["semantic"])
        close(out["detail"], expected["detail"])
        close(model.predict(expected["image"], backend=backend), expected["matte"])
        assert set(model(expected["image"], backend=backend)) == {"alpha"}


@pytest.mark.parametrize("backend", BACKENDS)
def test_paddleseg_release_gives_the_official_outputs(paddleseg, backend):
    path, expected = paddleseg
    model = load_model("modnet", path).eval()
    assert model.variant == "paddleseg"
    lr8x = []
    model.lr_branch.register_forward_hook(lambda module, inputs, output: lr8x.append(output[0]))
    with torch.no_grad():
        close(model(expected["net_input"] * 0.5 + 0.5, backend=backend)["alpha"], expected["alpha_net"])
        close(lr8x[0], expected["lr8x"])
        close(model.predict(expected["image"], backend=backend), expected["alpha"])


def test_paddleseg_recipe_gives_the_official_network_input_bit_for_bit(paddleseg):
    _, expected = paddleseg
    net_input = RECIPES["paddleseg"].network_input(expected["image"], None)
    assert torch.equal((net_input - 0.5) / 0.5, expected["net_input"])


@pytest.mark.parametrize("size", [(320, 256, 640, 512), (1080, 1920, 512, 910), (512, 910, 512, 896),
                                  (101, 67, 50, 33), (33, 17, 512, 263), (700, 500, 512, 365)])
def test_paddleseg_resize_is_opencv_inter_linear_on_8_bits(size):
    cv2 = pytest.importorskip("cv2")
    height, width, target_h, target_w = size
    photo = np.random.default_rng(height).integers(0, 256, (height, width, 3), dtype=np.uint8)
    official = cv2.resize(photo, (target_w, target_h), interpolation=cv2.INTER_LINEAR)
    image = torch.from_numpy(photo).permute(2, 0, 1)[None] / 255
    from fastmatte.models.paddleseg_transforms import resize_8bit
    ours = torch.round(resize_8bit(image, (target_h, target_w)) * 255).to(torch.uint8)
    assert torch.equal(ours[0].permute(1, 2, 0), torch.from_numpy(official))


def test_network_sizes_follow_the_official_rules(zhkkke):
    examples = load_manifest(DATA / "modnet")["preprocess"]["size_rule_examples"]
    for text, size in examples.items():
        height, width = map(int, text.split("x"))
        assert zhkkke_size(height, width) == tuple(size), text
    # PaddleSeg: ResizeByShort(512) with Python's round, then ResizeToIntMult(32)
    assert paddleseg_sizes(320, 256) == ((640, 512), (640, 512))
    assert paddleseg_sizes(1080, 1920) == ((512, 910), (512, 896))
    assert paddleseg_sizes(2160, 3840) == ((512, 910), (512, 896))
    assert paddleseg_sizes(1000, 333) == ((1538, 512), (1536, 512))


def test_zhkkke_file_loads_with_either_or_both_backbone_copies(zhkkke, tmp_path):
    path, expected = zhkkke
    state = torch.load(path, weights_only=True)
    assert any(k.startswith("module.lr_branch.backbone.") for k in state)  # as released: twice
    reference = load_model("modnet", path).eval()
    for drop in ("module.lr_branch.backbone.", "module.backbone."):
        single = {k: v for k, v in state.items() if not k.startswith(drop)}
        torch.save(single, tmp_path / "single.ckpt")
        model = load_model("modnet", tmp_path / "single.ckpt").eval()
        for (name, a), b in zip(model.state_dict().items(), reference.state_dict().values()):
            assert torch.equal(a, b), name


def test_a_converted_file_loads_back_with_its_variant(paddleseg, tmp_path):
    path, expected = paddleseg
    model = load_model("modnet", path).eval()
    torch.save(model.state_dict(), tmp_path / "own.pt")
    again = load_model("modnet", tmp_path / "own.pt").eval()
    assert again.variant == "paddleseg"
    with torch.no_grad():
        close(again.predict(expected["image"]), expected["alpha"])


def test_a_modnet_file_with_a_missing_tensor_names_it(zhkkke, paddleseg, tmp_path):
    state = torch.load(zhkkke[0], weights_only=True)
    for key in ("module.hr_branch.conv_hr2x.1.layers.0.weight",
                "module.backbone.model.features.5.conv.3.weight",
                "module.lr_branch.backbone.model.features.5.conv.3.weight"):
        del state[key]
    torch.save(state, tmp_path / "broken.ckpt")
    with pytest.raises(WeightsError, match=r"broken\.ckpt.*missing.*hr_branch\.conv_hr2x\.1\.layers\.0\."):
        load_model("modnet", tmp_path / "broken.ckpt")
    with pytest.raises(WeightsError, match=r"missing.*backbone\.features\.5\.conv\.3\.weight"):
        load_model("modnet", tmp_path / "broken.ckpt")
    paddle = read_state_dict(paddleseg[0])
    del paddle["head.f_branch.conv_f.0.layers.1.inorm.scale"]
    torch.save(paddle, tmp_path / "paddle.pt")
    with pytest.raises(WeightsError, match=r"missing.*f_branch\.conv_f\.0\.layers\.1\.inorm\.weight"):
        load_model("modnet", tmp_path / "paddle.pt")


def test_another_models_checkpoint_is_refused_naming_the_model(zhkkke, paddleseg, tmp_path):
    torch.save(build_model("cra", **cra.TINY).state_dict(), tmp_path / "cra.pt")
    with pytest.raises(WeightsError, match=r"cra\.pt is not a 'modnet' checkpoint"):
        load_model("modnet", tmp_path / "cra.pt")
    for path in (zhkkke[0], paddleseg[0]):
        with pytest.raises(WeightsError, match=r"not a 'rvm' checkpoint.*'modnet'"):
            load_model("rvm", path)
    (tmp_path / "notes.ckpt").write_text("not weights")
    with pytest.raises(WeightsError, match="notes.ckpt"):
        load_model("modnet", tmp_path / "notes.ckpt")


@pytest.mark.parametrize("variant", ["zhkkke", "paddleseg"])
def test_inference_path_equals_the_eager_twin(variant):
    torch.manual_seed(0)
    check_inference_path_equals_eager_twin(build_model("modnet", variant=variant))


def test_training_mode_gives_every_head_and_gradients():
    model = build_model("modnet").train()
    out = model(torch.rand(2, 3, 64, 64))
    assert set(out) == {"alpha", "semantic", "detail"}
    assert out["semantic"].shape == (2, 1, 4, 4) and out["detail"].shape == (2, 1, 64, 64)
    sum(v.mean() for v in out.values()).backward()
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize("image, message", [
    (torch.rand(1, 3, 64, 70), "multiples of 32"),
    (torch.rand(3, 64, 64), r"\[B, 3, H, W\]"),
    (torch.rand(1, 3, 64, 64, dtype=torch.float64), "float64"),
])
def test_bad_images_are_refused(image, message):
    with pytest.raises(ValueError, match=message):
        build_model("modnet").eval()(image)


def test_bad_variant_and_backend_are_refused():
    with pytest.raises(ValueError, match="variant must be one of"):
        MODNet(variant="paddle")
    with pytest.raises(ValueError, match="backend must be"):
        build_model("modnet").eval()(torch.rand(1, 3, 64, 64), backend="onnx")
    with pytest.raises(ValueError, match="sides must reach 32"):
        build_model("modnet").eval().predict(torch.rand(1, 3, 20, 2000))


def test_matter_gives_the_official_demo_matte(zhkkke, paddleseg):
    for (path, expected), key in ((zhkkke, "matte"), (paddleseg, "alpha")):
        photo = torch.round(expected["image"][0] * 255).to(torch.uint8).permute(1, 2, 0).numpy()
        alpha = Matter("modnet", weights=path)(photo)
        assert np.abs(alpha - expected[key][0, 0].numpy()).max() <= TOLERANCE


@pytest.mark.parametrize("family", ["zhkkke", "paddleseg"])
def test_command_line_mattes_a_photo_with_either_file(family, zhkkke, paddleseg, tmp_path, capsys):
    path, expected = zhkkke if family == "zhkkke" else paddleseg
    photo = torch.round(expected["image"][0] * 255).to(torch.uint8).permute(1, 2, 0).numpy()
    write_image(tmp_path / "photo.png", photo)
    assert main(["matte", str(tmp_path / "photo.png"), "--model", "modnet", "--weights", str(path),
                 "-o", str(tmp_path / "out")]) == 0
    alpha = read_matte(tmp_path / "out" / "photo_alpha.png")
    official = expected["matte" if family == "zhkkke" else "alpha"][0, 0].numpy()
    assert np.abs(alpha.astype(np.float32) / 255 - official).max() <= 0.5 / 255 + TOLERANCE


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("dtype, tolerance", [(torch.float32, 2e-3), (torch.float16, 2e-2),
                                              (torch.bfloat16, 6e-2)])
def test_cuda_matches_the_cpu_and_the_eager_twin(zhkkke, dtype, tolerance):
    path, expected = zhkkke
    cpu = load_model("modnet", path).eval()
    gpu = load_model("modnet", path).eval().to("cuda", dtype)
    image = expected["image"]
    with torch.no_grad():
        fused = gpu(image.to("cuda", dtype))["alpha"].float().cpu()
        eager = gpu(image.to("cuda", dtype), backend="torch")["alpha"].float().cpu()
        close(fused, cpu(image)["alpha"], tolerance)
        close(fused, eager, tolerance)
    matter = Matter("modnet", weights=path, device="cuda", precision="fp32")
    photo = torch.round(image[0] * 255).to(torch.uint8).permute(1, 2, 0).numpy()
    for _ in range(3):  # the second call of a shape is captured as a CUDA graph, the third replays it
        assert np.abs(matter(photo) - expected["matte"][0, 0].numpy()).max() <= 2e-3

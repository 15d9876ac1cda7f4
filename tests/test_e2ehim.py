"""E2E-HIM against the authors' release: the oracle in tests/data/e2ehim_official (copied from
../shared/oracles/e2ehim) rebuilds an official-format swintiny.ckpt and holds the official
E2EHIMST's outputs at 640 x 640 on a real photo (subsampled and cropped). The file is written in
the official format and loaded through load_model as a user would."""
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fastmatte.cli import main
from fastmatte.models import E2EHIM, WeightsError, load_model, read_state_dict
from fastmatte.models.e2ehim import convert_official
from oracle_weights import load_manifest, write_checkpoint

DATA = Path(__file__).parent / "data" / "e2ehim_official"
TOLERANCE = 1e-4  # fp32, max abs difference
MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    """(path of the official-format swintiny.ckpt, the model load_model makes of it in eval mode,
    the official outputs)."""
    path = tmp_path_factory.mktemp("e2ehim") / "swintiny.ckpt"
    write_checkpoint(load_manifest(DATA), path)
    with np.load(DATA / "expected.npz") as z:
        expected = {k: torch.from_numpy(z[k]) for k in z.files}
    return path, load_model("e2ehim", weights=path).eval(), expected


def lanczos(image, height, width):
    """The official preprocessing's resize: image [1, 3, h, w] in [0, 1] as 8-bit (rounded), resized
    by cv2 INTER_LANCZOS4 to height x width, / 255: [1, 3, height, width] float32."""
    pixels = (image[0] * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    resized = cv2.resize(pixels, (width, height), interpolation=cv2.INTER_LANCZOS4)
    return torch.from_numpy(resized).permute(2, 0, 1)[None].contiguous().float() / 255


@pytest.fixture(scope="module")
def net_image(release):
    """The official 640 x 640 network input as forward takes it, RGB in [0, 1]: the official
    preprocessing of the photo (which gives expected["net_input"] exactly once normalized)."""
    image = lanczos(release[2]["image"], 640, 640)
    assert torch.equal((image - MEAN) / STD, release[2]["net_input"])
    return image


@pytest.fixture(scope="module")
def outputs(release, net_image):
    """backend -> forward's outputs on the official input (each computed once)."""
    with torch.no_grad():
        return {backend: release[1](net_image, backend=backend) for backend in ("torch", None)}


def official_layout(out):
    """forward's outputs in the official (x4o, x1all, maskt) layout, maskt [B, 3N, H, W]."""
    return {"x4o": out["presence"], "x1all": out["alpha"], "maskt": out["trimap"].flatten(1, 2)}


@pytest.mark.parametrize("backend", ["torch", None])
def test_release_gives_the_official_outputs(release, outputs, backend):
    expected = release[2]
    got = official_layout(outputs[backend])
    assert got["x1all"].shape == (1, 20, 640, 640) and got["maskt"].shape == (1, 60, 640, 640)
    crop = (slice(None), slice(None), slice(288, 352), slice(160, 224))
    pairs = {"x4o": got["x4o"],
             "x1all_sub8": got["x1all"][:, :, 5::8, 3::8], "x1all_crop": got["x1all"][crop],
             "maskt_sub16": got["maskt"][:, :, 5::16, 3::16], "maskt_crop": got["maskt"][crop]}
    for key, value in pairs.items():
        assert value.shape == expected[key].shape, key
        assert (value - expected[key]).abs().max().item() <= TOLERANCE, key
    assert int((got["x4o"][..., 1] > got["x4o"][..., 0]).sum()) == 5  # the oracle's present queries


def test_the_checkpoint_converts_as_the_official_loader_reads_it(release):
    path, model, _ = release
    official = read_state_dict(path)
    conversion = convert_official(official)
    assert "swintiny" in conversion.layout
    assert sorted(conversion.dropped) == sorted(k for k in official if k.endswith("relative_position_index")
                                                or k.startswith(("conv1.", "conv2.")))
    assert len(conversion.dropped) == 12 + 4
    assert set(conversion.state_dict) == set(model.state_dict())
    own = convert_official(model.state_dict())  # fastmatte's own names pass through
    assert own.dropped == () and set(own.state_dict) == set(model.state_dict())


def test_a_missing_tensor_is_named(release, tmp_path):
    state = read_state_dict(release[0])
    del state["globalfc2.layers.2.bias"]
    torch.save(state, tmp_path / "broken.ckpt")
    with pytest.raises(WeightsError, match=r"broken\.ckpt.*missing.*globalfc2\.layers\.2\.bias"):
        load_model("e2ehim", weights=tmp_path / "broken.ckpt")


def test_a_converted_file_loads_back(release, tmp_path):
    """`fastmatte convert` writes fastmatte's own safetensors, which loads to the same tensors."""
    path, model, _ = release
    out = tmp_path / "e2ehim.safetensors"
    assert main(["convert", "e2ehim", str(path), str(out)]) == 0
    again = load_model("e2ehim", weights=out).state_dict()
    assert all(torch.equal(again[k], v) for k, v in model.state_dict().items())


def official_instances(out, height, width):
    """eval_swintiny.py's post-processing of one image's outputs (numpy/cv2, as the script does):
    present queries, argmax of softmax(maskt), clip(alpha) * 255 in unknown + 255 in foreground,
    uint8, cv2 Lanczos back to height x width, kept when sum / 255 > 1000. [n, H, W] uint8."""
    presence = out["presence"][0].numpy()
    trimap = torch.softmax(out["trimap"][0], 1).argmax(1).numpy()
    alpha = np.clip(out["alpha"][0].numpy(), 0, 1)
    kept = []
    for t in range(presence.shape[0]):
        if presence[t, 1] > presence[t, 0]:
            matte = np.array(alpha[t] * 255.0 * (trimap[t] == 1) + (trimap[t] == 2) * 255.0, np.uint8)
            matte = cv2.resize(matte, (width, height), interpolation=cv2.INTER_LANCZOS4)
            if np.sum(matte) / 255.0 > 1000.0:
                kept.append(matte)
    return np.stack(kept)


def test_predict_follows_the_official_script(release, outputs):
    """predict on the photo equals eval_swintiny.py's post-processing of the official outputs
    (forward on the official input, which test_release_gives_the_official_outputs checks) to the
    8-bit value."""
    _, model, expected = release
    photo = expected["image"]
    want = official_instances(outputs[None], *photo.shape[-2:])
    with torch.no_grad():
        got = model.predict(photo)
    assert len(got) == 1 and got[0].dtype == torch.float32
    assert got[0].shape == want.shape and 0 < want.shape[0] <= 5
    assert torch.equal((got[0] * 255).round().to(torch.uint8), torch.from_numpy(want))


def test_a_batch_gives_each_images_result(release, net_image, outputs):
    """Two 640 images in one batch: each image's outputs are its own single-image outputs (the
    21-way softmax and the per-query kernels are per image)."""
    model = release[1]
    other = net_image.flip(-1).roll(100, -2)
    with torch.no_grad():
        both = model(torch.cat([net_image, other]))
        alone = model(other)
    for key in ("presence", "alpha", "trimap"):
        assert (both[key][:1] - outputs[None][key]).abs().max().item() <= TOLERANCE, key
        assert (both[key][1:] - alone[key]).abs().max().item() <= TOLERANCE, key


def correlation(a, b):
    """Pearson correlation of each query's map: a, b [N, H, W] -> [N]."""
    a, b = a.flatten(1), b.flatten(1)
    a, b = a - a.mean(1, keepdim=True), b - b.mean(1, keepdim=True)
    return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1))


def test_other_sizes_run_and_agree_with_the_640_path(release, outputs):
    """The photo at 512 x 768 (not the official size), in a batch with another image (the photo
    upside down): the twin (the authors' algorithm with the repeats and reshapes computed from the
    size) and the fused path agree; and each query's alpha, brought back to the photo's size,
    correlates with its 640 x 640 alpha (measured 0.82 to 0.96,
    mean 0.90) far more than the other image's does (mean 0.33): the per-instance maps follow the
    image content at any size. Presence decisions are not compared: the oracle's weights are
    random, not trained, and its queries' presence logits move by up to 1.0 with the size of the
    token grid the decoder attends to (measured: as many decisions agree as with another photo)."""
    _, model, expected = release
    photo = expected["image"]
    wide = lanczos(photo, 512, 768)
    with torch.no_grad():
        eager = model(wide, backend="torch")
        fused = model(torch.cat([wide, wide.flip(-2)]))  # the upside-down photo: another image
    assert fused["alpha"].shape == (2, 20, 512, 768) and fused["trimap"].shape == (2, 20, 3, 512, 768)
    for key in ("presence", "alpha", "trimap"):
        assert (fused[key][:1] - eager[key]).abs().max().item() <= TOLERANCE, key
    size = photo.shape[-2:]
    at_640 = F.interpolate(outputs[None]["alpha"], size=size, mode="bilinear")[0]
    same, other = (correlation(at_640, F.interpolate(fused["alpha"][i:i + 1], size=size, mode="bilinear")[0])
                   for i in (0, 1))
    assert same.min().item() >= 0.75 and same.mean().item() >= other.mean().item() + 0.4


def test_inference_path_equals_the_eager_twin_on_small_batches(release):
    model = release[1]
    image = torch.rand(2, 3, 64, 96)
    with torch.no_grad():
        eager = model(image, backend="torch")
        fused = model(image)
    assert fused["presence"].shape == (2, 20, 2) and fused["alpha"].shape == (2, 20, 64, 96)
    assert fused["trimap"].shape == (2, 20, 3, 64, 96)
    for key in eager:
        assert (fused[key] - eager[key]).abs().max().item() <= TOLERANCE, key


@pytest.mark.parametrize("image, message", [
    (torch.rand(3, 64, 64), r"E2EHIM: image must be a float \[B, 3, H, W\]"),
    (torch.rand(1, 3, 64, 70), r"E2EHIM: image height and width must be multiples of 32.*64x70"),
    (torch.zeros(1, 3, 64, 64, dtype=torch.uint8), r"E2EHIM: image must be a float"),
    (torch.rand(1, 3, 64, 64, dtype=torch.float64), r"E2EHIM: image is torch.float64"),
    (torch.rand(0, 3, 64, 64), r"E2EHIM: image must not be empty"),
])
def test_wrong_images_are_refused_naming_the_problem(image, message):
    with pytest.raises(ValueError, match=message):
        E2EHIM()(image)


def test_training_mode_differentiates():
    model = E2EHIM(num_queries=3).train()
    out = model(torch.rand(1, 3, 64, 64))
    assert out["alpha"].shape == (1, 3, 64, 64)
    (out["alpha"].mean() + out["trimap"].mean() + out["presence"].mean()).backward()
    assert model.globalfc2.layers[2].weight.grad is not None and model.trans.norm0.weight.grad is not None


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_equals_the_eager_twin_replays_as_a_graph_and_runs_in_half(release):
    from fastmatte.matter import capture_graph

    import copy

    model = copy.deepcopy(release[1]).cuda()  # the shared CPU model stays as it is
    image = torch.rand(1, 3, 128, 192, device="cuda")
    with torch.no_grad():
        fused, eager = model(image), model(image, backend="torch")
        for key in eager:  # cuDNN may run the convolutions in TF32
            assert (fused[key] - eager[key]).abs().max().item() <= 5e-3, key
        graph, out = capture_graph(lambda: model(image)["alpha"])
        graph.replay()
        torch.testing.assert_close(out, fused["alpha"], atol=1e-5, rtol=0)
        half = model.half()(image.half())["alpha"].float()
    assert (half - fused["alpha"]).abs().mean().item() < 2e-2


def test_the_command_line_writes_each_present_instance(release, tmp_path):
    """`fastmatte matte photo.png --model e2ehim --weights swintiny.ckpt`: one 8-bit matte per
    instance predict keeps (the official post-processing), and the overview."""
    rgb = (release[2]["image"][0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    cv2.imwrite(str(tmp_path / "group.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert main(["matte", str(tmp_path / "group.png"), "--model", "e2ehim", "--weights", str(release[0]),
                 "-o", str(tmp_path / "out")]) == 0
    with torch.no_grad():
        instances = release[1].predict(torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255)[0]
    assert len(instances) > 0
    written = sorted((tmp_path / "out").glob("group_instance*_alpha.png"))
    assert [p.name for p in written] == [f"group_instance{k}_alpha.png" for k in range(1, len(instances) + 1)]
    for path, matte in zip(written, instances):
        assert np.array_equal(cv2.imread(str(path), cv2.IMREAD_UNCHANGED),
                              (matte * 255).round().to(torch.uint8).numpy())
    assert (tmp_path / "out" / "group_instances.png").is_file()

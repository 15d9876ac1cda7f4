"""The synthetic portrait, the synthetic training composites and `fastmatte sample`."""
import cv2
import numpy as np
import pytest
import scipy.ndimage as ndi
import torch

from fastmatte.cli import main
from fastmatte.io import read_matte
from fastmatte.io.sample import sample_portrait, synthetic_composites


@pytest.fixture(scope="module")
def hd_portrait():
    return sample_portrait(1080, 1920, seed=0)


def test_portrait_shapes_dtypes_and_determinism():
    image, alpha = sample_portrait(270, 480, seed=5)
    assert image.shape == (270, 480, 3) and image.dtype == np.uint8
    assert alpha.shape == (270, 480) and alpha.dtype == np.uint8
    again = sample_portrait(270, 480, seed=5)
    np.testing.assert_array_equal(again[0], image)
    np.testing.assert_array_equal(again[1], alpha)
    other = sample_portrait(270, 480, seed=6)
    assert not np.array_equal(other[0], image) and not np.array_equal(other[1], alpha)
    with pytest.raises(ValueError, match="height must be an int >= 64"):
        sample_portrait(32, 480)


def test_portrait_alpha_has_a_thin_uncertain_band_with_fine_strands(hd_portrait):
    image, alpha = hd_portrait
    H = alpha.shape[0]
    soft = (alpha > 0) & (alpha < 255)
    assert 0.005 < soft.mean() < 0.08  # a realistic share of uncertain pixels at HD
    assert 0.1 < (alpha == 255).mean() < 0.5 and (alpha == 0).mean() > 0.4
    assert len(np.unique(alpha[soft])) > 200  # fractional values, not a two-level mask
    # Distance of every pixel to the outline of the solid figure (the binarized matte, opened so
    # that opaque strand centers do not count as figure).
    inside = ndi.binary_opening(alpha >= 128, np.ones((5, 5), bool))
    distance = np.where(inside, ndi.distance_transform_edt(inside), ndi.distance_transform_edt(~inside))
    assert np.percentile(distance[soft], 99) < 0.15 * H  # the band hugs the outline
    # Hair strands: thin semi-transparent pixels well beyond the solid outline, above the shoulders.
    strands = soft & ~inside & (distance > 0.02 * H)
    assert strands.sum() > 0.003 * alpha.size
    assert np.argwhere(strands)[:, 0].max() < 0.7 * H
    assert np.median(alpha[strands]) < 128  # semi-transparent, as fine hair is
    # Sparse: out there, most pixels are background between the strands.
    beyond = ~inside & (distance > 0.02 * H) & (distance < 0.1 * H)
    assert (alpha[beyond] > 0).mean() < 0.5
    # The body's outline is soft but narrow: below the hair, soft pixels lie within 3 px of it.
    low = np.zeros_like(soft)
    low[int(0.8 * H):] = True
    assert distance[soft & low].max() <= 3


def test_portrait_looks_like_a_photo(hd_portrait):
    image, alpha = hd_portrait
    person, background = image[alpha == 255], image[alpha == 0]
    assert image.std() > 20  # not flat
    assert np.abs(person.mean(0) - background.mean(0)).max() > 10  # the person stands out
    # Sensor grain: neighbouring background pixels differ a little, but nowhere near noise.
    rows = image[:50, :200].astype(np.float64)
    step = np.abs(np.diff(rows, axis=1)).mean()
    assert 0.3 < step < 6


def test_synthetic_composites_are_exact_composites():
    data = synthetic_composites(4, 64, 96, generator=3)
    assert set(data) == {"image", "alpha", "fg", "bg"}
    for name, channels in (("image", 3), ("alpha", 1), ("fg", 3), ("bg", 3)):
        t = data[name]
        assert t.shape == (4, channels, 64, 96) and t.dtype == torch.float32 and t.device.type == "cpu"
        assert t.min() >= 0 and t.max() <= 1
    alpha = data["alpha"]
    composite = alpha * data["fg"] + (1 - alpha) * data["bg"]
    torch.testing.assert_close(data["image"], composite, rtol=0, atol=1e-6)
    soft = ((alpha > 0) & (alpha < 1)).float().mean(dim=(1, 2, 3))
    assert (soft > 0.01).all() and (soft < 0.3).all()
    assert ((alpha == 1).float().mean(dim=(1, 2, 3)) > 0.1).all()
    assert ((alpha == 0).float().mean(dim=(1, 2, 3)) > 0.1).all()
    assert not torch.equal(alpha[0], alpha[1])  # a different figure per image


def test_synthetic_composites_follow_the_seed_or_generator():
    a = synthetic_composites(2, 64, 64, generator=7)
    b = synthetic_composites(2, 64, 64, generator=torch.Generator().manual_seed(7))
    c = synthetic_composites(2, 64, 64, generator=8)
    for name in a:
        assert torch.equal(a[name], b[name])
    assert not torch.equal(a["alpha"], c["alpha"])


def test_cli_sample_writes_the_portrait_and_refuses_to_overwrite(tmp_path, capsys):
    out = tmp_path / "new" / "dir"
    assert main(["sample", str(out), "--seed", "2"]) == 0
    printed = capsys.readouterr().out
    image_path, alpha_path = out / "portrait.png", out / "portrait_alpha.png"
    assert str(image_path) in printed and str(alpha_path) in printed
    expected_image, expected_alpha = sample_portrait(1080, 1920, seed=2)
    written = cv2.cvtColor(cv2.imread(str(image_path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(written, expected_image)
    np.testing.assert_array_equal(read_matte(alpha_path), expected_alpha)

    before = image_path.read_bytes(), alpha_path.read_bytes()
    assert main(["sample", str(out), "--seed", "3"]) == 2
    assert "already exist" in capsys.readouterr().err
    assert (image_path.read_bytes(), alpha_path.read_bytes()) == before

    alpha_path.unlink()  # one file left: still refused, and the missing one is not written either
    assert main(["sample", str(out), "--seed", "3"]) == 2
    assert not alpha_path.exists() and image_path.read_bytes() == before[0]

    assert main(["sample", str(out), "--seed", "3", "--force"]) == 0
    np.testing.assert_array_equal(read_matte(alpha_path), sample_portrait(1080, 1920, seed=3)[1])

    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []  # no temporary files left


def test_cli_sample_refuses_bad_arguments_and_folders_in_one_line(tmp_path, capsys):
    def refused(*args) -> str:
        assert main(["sample", *map(str, args)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("fastmatte sample: "), err
        return err

    assert "--seed must be an int >= 0, got -5" in refused(tmp_path / "out", "--seed", "-5")
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("keep me")
    assert f"cannot write into {not_a_dir}: it is a file, not a folder" in refused(not_a_dir)
    assert f"a file is in the way ({not_a_dir})" in refused(not_a_dir / "out", "--force")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"] and not_a_dir.read_text() == "keep me"

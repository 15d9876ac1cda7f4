"""`fastmatte matte` and `fastmatte eval --instances` with an instance model: the fake model of
test_matter_instances.py registered as "e2ehim" (until the real one says instances = True)."""
import csv
import json
import math
import os

import numpy as np
import pytest
from dataclasses import replace

import fastmatte.models
from fastmatte.cli import main
from fastmatte.cli.matte import PALETTE, instance_overview
from fastmatte.io import read_image, read_matte, write_image
from fastmatte.io.video import VideoWriter
from fastmatte.metrics import instance_metrics
from test_matter_instances import Blobs, expected, frame


@pytest.fixture(autouse=True)
def fake_e2ehim(monkeypatch):
    entry = fastmatte.models.MODELS["e2ehim"]
    monkeypatch.setitem(fastmatte.models.MODELS, "e2ehim", replace(entry, build=Blobs))


def photo(path, seed=0, drop=()):
    write_image(path, frame(seed, drop=drop))
    return path


def matte(*args):
    return main(["matte", "--model", "e2ehim", *map(str, args)])


def names(folder):
    return sorted(p.name for p in folder.iterdir())


def test_photos_give_instance_pngs_and_an_overview(tmp_path, capsys):
    a, b = photo(tmp_path / "a.png", 0, drop=(1,)), photo(tmp_path / "b.png", 1, drop=(0, 1, 2))
    out = tmp_path / "out"
    assert matte(a, b, "-o", out) == 0
    assert names(out) == ["a_instance1_alpha.png", "a_instance2_alpha.png", "a_instances.png",
                          "b_instances.png"]
    image = read_image(a)
    want = expected(image)
    for k, w in enumerate(want, 1):
        np.testing.assert_array_equal(read_matte(out / f"a_instance{k}_alpha.png"),
                                      np.round(w * 255).astype(np.uint8))
    overview = read_image(out / "a_instances.png")
    assert overview.shape == image.shape and overview.dtype == np.uint8
    np.testing.assert_array_equal(overview, instance_overview(image, [np.round(w * 255).astype(np.uint8)
                                                                      for w in want]))
    np.testing.assert_array_equal(read_image(out / "b_instances.png"), read_image(b))  # nobody: the photo
    assert "wrote 4 file(s)" in capsys.readouterr().out


def test_overview_tints_with_the_palette():
    image = np.full((2, 2, 3), 100, np.uint8)
    alphas = [np.array([[255, 0], [0, 0]], np.uint8), np.array([[0, 255], [0, 0]], np.uint8)]
    out = instance_overview(image, alphas)
    np.testing.assert_array_equal(out[0, 0], np.rint(0.4 * 100 + 0.6 * np.array(PALETTE[0][1])))
    np.testing.assert_array_equal(out[0, 1], np.rint(0.4 * 100 + 0.6 * np.array(PALETTE[1][1])))
    np.testing.assert_array_equal(out[1], image[1])


def test_background_composites_with_the_union(tmp_path):
    a = photo(tmp_path / "a.png", 2)
    assert matte(a, "-o", tmp_path / "out", "--background", "green") == 0
    image = read_image(a)
    union = expected(image).max(0)[..., None]
    want = np.round(union * image + (1 - union) * np.float32((0, 255, 0)))
    np.testing.assert_allclose(read_image(tmp_path / "out" / "a_composite.png").astype(int), want, atol=1)


def test_video_is_refused_before_anything_is_written(tmp_path, capsys):
    video = tmp_path / "clip.mp4"
    with VideoWriter(video, 25, (16, 12)) as writer:
        writer.write(frame(0, 12, 16))
    a = photo(tmp_path / "a.png")
    assert matte(a, video, "-o", tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert "clip.mp4" in err and "not tracked across frames" in err
    assert not (tmp_path / "out").exists()


def test_foreground_is_refused(tmp_path, capsys):
    assert matte(photo(tmp_path / "a.png"), "-o", tmp_path / "out", "--foreground") == 2
    assert "instance model" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_earlier_instance_files_need_force_and_stale_ones_are_deleted(tmp_path, capsys):
    a = photo(tmp_path / "a.png", 0)  # three instances
    out = tmp_path / "out"
    out.mkdir()
    for k in (1, 4, 7):  # an earlier run that found more instances
        write_image(out / f"a_instance{k}_alpha.png", np.zeros((3, 3), np.uint8))
    (out / "ab_instance1_alpha.png").write_bytes(b"another input's")
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert matte(a, "-o", out) == 2
    err = capsys.readouterr().err
    assert "a_instance1_alpha.png" in err and "--force" in err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # nothing written or deleted
    assert matte(a, "-o", out, "--force") == 0
    assert "deleted 2 earlier instance matte(s)" in capsys.readouterr().out
    assert names(out) == ["a_instance1_alpha.png", "a_instance2_alpha.png", "a_instance3_alpha.png",
                          "a_instances.png", "ab_instance1_alpha.png"]
    assert read_matte(out / "a_instance1_alpha.png").shape == (12, 17)
    assert (out / "ab_instance1_alpha.png").read_bytes() == b"another input's"


def test_an_existing_overview_needs_force(tmp_path, capsys):
    a = photo(tmp_path / "a.png", 0, drop=(0, 1, 2))
    out = tmp_path / "out"
    out.mkdir()
    write_image(out / "a_instances.png", np.zeros((3, 3), np.uint8))
    assert matte(a, "-o", out) == 2
    assert "already exist" in capsys.readouterr().err
    assert read_image(out / "a_instances.png").shape == (3, 3, 3)
    assert matte(a, "-o", out, "--force") == 0
    assert read_image(out / "a_instances.png").shape == (12, 17, 3)


def test_an_input_named_like_an_instance_output_is_never_replaced(tmp_path, capsys):
    folder = tmp_path / "photos"
    folder.mkdir()
    a = photo(folder / "a.png")
    victim = photo(tmp_path / "a_instance5_alpha.png", 3)
    data = victim.read_bytes()
    # -o the folder of the input a_instance5_alpha.png, named on the command line: an input.
    assert main(["matte", "--model", "e2ehim", str(a), str(victim), "-o", str(tmp_path), "--force"]) == 2
    assert "one of the inputs" in capsys.readouterr().err
    assert victim.read_bytes() == data


def test_rerun_into_the_input_folder_leaves_earlier_outputs_out(tmp_path, capsys):
    folder = tmp_path / "photos"
    folder.mkdir()
    photo(folder / "a.png", 0)
    assert matte(folder, "-o", folder) == 0
    capsys.readouterr()
    assert matte(folder, "-o", folder, "--force") == 0
    captured = capsys.readouterr()
    assert "left out 4 file(s)" in captured.err and "1 of 1 input(s)" in captured.out
    assert names(folder) == ["a.png", "a_instance1_alpha.png", "a_instance2_alpha.png",
                             "a_instance3_alpha.png", "a_instances.png"]


def test_a_model_without_the_class_flag_in_the_registry_is_found_when_built(tmp_path, monkeypatch, capsys):
    entry = fastmatte.models.MODELS["e2ehim"]
    monkeypatch.setitem(fastmatte.models.MODELS, "e2ehim", replace(entry, build=lambda **config: Blobs()))
    video = tmp_path / "clip.mp4"
    with VideoWriter(video, 25, (16, 12)) as writer:
        writer.write(frame(0, 12, 16))
    assert matte(video, "-o", tmp_path / "out") == 2
    assert "not tracked across frames" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    assert matte(photo(tmp_path / "a.png"), "-o", tmp_path / "out") == 0
    assert "a_instances.png" in names(tmp_path / "out")


# fastmatte eval --instances

def write_instances(folder, name, mattes, overview_shape=None):
    folder.mkdir(exist_ok=True)
    for k, m in enumerate(mattes, 1):
        write_image(folder / f"{name}_instance{k}_alpha.png", m)
    if overview_shape is not None:
        write_image(folder / f"{name}_instances.png", np.zeros(overview_shape, np.uint8))


def blob(h, w, top, left, size, value=255):
    m = np.zeros((h, w), np.uint8)
    m[top:top + size, left:left + size] = value
    return m


@pytest.fixture
def instance_folders(tmp_path):
    pred, gt = tmp_path / "pred", tmp_path / "gt"
    h, w = 20, 24
    data = {  # name: (predicted, ground truths)
        "one": ([blob(h, w, 2, 2, 8, 200), blob(h, w, 10, 12, 6)],
                [blob(h, w, 10, 12, 7), blob(h, w, 2, 2, 8)]),
        "two": ([blob(h, w, 0, 0, 5)], [blob(h, w, 0, 0, 5, 180), blob(h, w, 12, 12, 6)]),
        "none": ([], [blob(h, w, 3, 3, 4)]),  # the model found nobody: the overview alone
    }
    for name, (p, g) in data.items():
        write_instances(pred, name, p, (h, w, 3))
        write_instances(gt, name, g)
    write_instances(pred, "orphan", [blob(h, w, 1, 1, 3)])
    write_instances(gt, "lost", [blob(h, w, 1, 1, 3)])
    return pred, gt, data


def test_eval_instances_matches_instance_metrics(instance_folders, tmp_path, capsys):
    pred, gt, data = instance_folders
    csv_path, json_path = tmp_path / "rows.csv", tmp_path / "out.json"
    assert main(["eval", "--instances", str(pred), str(gt), "--csv", str(csv_path),
                 "--json", str(json_path)]) == 1
    captured = capsys.readouterr()
    assert "3 images" in captured.out
    assert "orphan" in captured.err and "lost" in captured.err and "2 problem(s)" in captured.err
    rows = {r["name"]: r for r in csv.DictReader(open(csv_path))}
    record = json.loads(json_path.read_text())
    assert sorted(rows) == sorted(data) == sorted(r["name"] for r in record["images"])
    sums = {}
    for name, (p, g) in data.items():
        scores = instance_metrics(np.stack(p) if p else np.zeros((0, 20, 24), np.uint8), np.stack(g))
        for t, s in scores.items():
            for key in ("emse", "emad", "rec", "acc", "matches"):
                got = float(rows[name][f"{key}@{t:g}"]) if rows[name][f"{key}@{t:g}"] != "nan" else math.nan
                want = getattr(s, key)
                assert got == pytest.approx(want, nan_ok=True), (name, t, key)
                if not (isinstance(want, float) and math.isnan(want)):
                    sums.setdefault(f"{key}@{t:g}", []).append(want)
        assert int(rows[name]["pred_instances"]) == len(p) and int(rows[name]["gt_instances"]) == len(g)
    for key, values in sums.items():
        assert record["mean"][key] == pytest.approx(sum(values) / len(values))
    n_pred = sum(len(p) for p, _ in data.values())
    n_gt = sum(len(g) for _, g in data.values())
    for t in ("0.5", "0.75"):
        pooled = record["pooled"][t]
        assert pooled["rec"] == pytest.approx(pooled["matches"] / n_gt)
        assert pooled["acc"] == pytest.approx(pooled["matches"] / n_pred)
    assert len(record["problems"]) == 2


def test_eval_instances_clean_run_and_thresholds(tmp_path, capsys):
    pred, gt = tmp_path / "pred", tmp_path / "gt"
    m = [blob(10, 10, 0, 0, 5), blob(10, 10, 5, 5, 5)]
    write_instances(pred, "x", m)
    write_instances(gt, "x", m[::-1])
    assert main(["eval", "--instances", str(pred), str(gt), "--iou-thresholds", "0.9"]) == 0
    out = capsys.readouterr().out
    assert "1 images" in out and "0.9" in out


@pytest.mark.parametrize("args, message", [
    (["--metrics", "sad"], "--metrics does not apply"),
    (["--trimap-dir", "."], "--trimap-dir does not apply"),
    (["--iou-thresholds", "0,0.5"], "--iou-thresholds must be"),
    (["--iou-thresholds", "x"], "--iou-thresholds must be"),
])
def test_eval_instances_usage_errors(tmp_path, capsys, args, message):
    for d in ("p", "g"):
        (tmp_path / d).mkdir()
    assert main(["eval", "--instances", str(tmp_path / "p"), str(tmp_path / "g"), *args]) == 2
    assert message in capsys.readouterr().err


def test_iou_thresholds_need_instances(tmp_path, capsys):
    for d in ("p", "g"):
        (tmp_path / d).mkdir()
    assert main(["eval", str(tmp_path / "p"), str(tmp_path / "g"), "--iou-thresholds", "0.5"]) == 2
    assert "needs --instances" in capsys.readouterr().err


def test_matte_then_eval_round_trip(tmp_path, capsys):
    a = photo(tmp_path / "a.png", 0)
    assert matte(a, "-o", tmp_path / "out") == 0
    gt = tmp_path / "gt"
    write_instances(gt, "a", [np.round(w * 255).astype(np.uint8) for w in expected(read_image(a))])
    capsys.readouterr()
    assert main(["eval", "--instances", str(tmp_path / "out"), str(gt),
                 "--json", str(tmp_path / "r.json")]) == 0
    record = json.loads((tmp_path / "r.json").read_text())
    assert record["images"][0]["rec@0.5"] == 1.0 and record["images"][0]["emse@0.5"] == 0.0
    assert not os.path.exists(tmp_path / "gt" / "r.json")

"""`fastmatte eval` and fastmatte.io.read_matte on files written to a temporary folder."""
import csv
import json

import cv2
import numpy as np
import pytest

import dim_metrics_numpy as dim
from fastmatte.cli import main
from fastmatte.io import UnreadableImage, read_matte


def matte(seed, shape=(20, 30)):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:shape[0], 0:shape[1]]
    field = np.clip((x / shape[1] + rng.normal(0, 0.1, shape)) * 300 - 100, 0, 255)
    return field.astype(np.uint8)


def write(path, image):
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), image)
    return path


@pytest.fixture
def folders(tmp_path):
    """pred/gt/trimap folders: a and b are fine (b's prediction is a TIFF: names match without
    extension), c has no prediction, d no ground truth, e is unreadable, f's pred has another size."""
    pred, gt, trimap = tmp_path / "pred", tmp_path / "gt", tmp_path / "trimap"
    for i, name in enumerate("abcef"):
        g = matte(i)
        write(gt / f"{name}.png", g)
        t = np.full(g.shape, 128, np.uint8)
        t[:, :5], t[:, -5:] = 0, 255
        write(trimap / f"{name}.png", t)
        if name in "ab":
            suffix = "png" if name == "a" else "tif"
            write(pred / f"{name}.{suffix}", np.clip(g.astype(int) + 20, 0, 255).astype(np.uint8))
    write(pred / "d.png", matte(9))
    (pred / "e.png").write_bytes(b"not an image")
    write(pred / "f.png", matte(5, (21, 30)))
    return pred, gt, trimap


def expected(folders, name, metric):
    pred, gt, trimap = folders
    p = read_matte(next(pred.glob(f"{name}.*")))
    g, t = read_matte(gt / f"{name}.png"), read_matte(trimap / f"{name}.png")
    return {"sad": dim.sad, "mse": dim.mse, "grad": dim.grad, "conn": dim.conn}[metric](p, g, t)


def test_eval_reports_problems_and_writes_rows(folders, tmp_path, capsys):
    pred, gt, trimap = folders
    out_csv, out_json = tmp_path / "rows.csv", tmp_path / "out" / "rows.json"
    out_json.parent.mkdir()
    code = main(["eval", str(pred), str(gt), "--trimap-dir", str(trimap), "--csv", str(out_csv),
                 "--json", str(out_json)])
    captured = capsys.readouterr()
    assert code == 1
    problems = captured.err
    assert "4 problem(s)" in problems
    assert "c.png: no prediction named 'c'" in problems
    assert "d.png: no ground truth named 'd'" in problems
    assert "e.png: not an image OpenCV can decode" in problems
    assert "f: sizes differ (pred f.png 21x30, gt f.png 20x30, trimap f.png 20x30)" in problems

    rows = list(csv.DictReader(out_csv.open()))
    assert [r["name"] for r in rows] == ["a", "b"]
    for row in rows:
        for metric in ("sad", "mse", "grad", "conn"):
            assert float(row[metric]) == pytest.approx(expected(folders, row["name"], metric), rel=1e-4)
    record = json.loads(out_json.read_text())
    assert record["metrics"] == ["sad", "mse", "grad", "conn"] and len(record["problems"]) == 4
    assert record["mean"]["sad"] == pytest.approx(np.mean([float(r["sad"]) for r in rows]))
    assert "2 images" in captured.out and "sad" in captured.out


def test_eval_clean_run_exits_zero(tmp_path, capsys):
    for name in ("x", "y"):
        write(tmp_path / "gt" / f"{name}.png", matte(1))
        write(tmp_path / "pred" / f"{name}.png", matte(2))
    code = main(["eval", str(tmp_path / "pred"), str(tmp_path / "gt"), "--metrics", "mad,sad_t"])
    out = capsys.readouterr().out
    assert code == 0
    mad = dim.mad(matte(2), matte(1))
    assert f"{mad:14.6g}" in out and "whole images" in out


def test_eval_refuses_to_overwrite_inputs(folders, capsys):
    pred, gt, trimap = folders
    before = (gt / "a.png").read_bytes()
    assert main(["eval", str(pred), str(gt), "--csv", str(gt / "a.png")]) == 2
    assert "refusing to write" in capsys.readouterr().err
    assert (gt / "a.png").read_bytes() == before


@pytest.mark.parametrize("args,message", [
    (["--metrics", "sad,psnr"], "--metrics must be a comma list"),
    (["--force-known"], "--force-known needs --trimap-dir"),
])
def test_eval_usage_errors(folders, capsys, args, message):
    pred, gt, _ = folders
    assert main(["eval", str(pred), str(gt)] + args) == 2
    assert message in capsys.readouterr().err


def test_eval_missing_directory(tmp_path, capsys):
    assert main(["eval", str(tmp_path / "nope"), str(tmp_path)]) == 2
    assert "is not a directory" in capsys.readouterr().err


def test_read_matte_formats(tmp_path):
    g8 = matte(3)
    assert np.array_equal(read_matte(write(tmp_path / "a.png", g8)), g8)
    g16 = (g8.astype(np.uint16) * 257)
    np.testing.assert_allclose(read_matte(write(tmp_path / "b.png", g16)), g8 / 255, atol=1e-7)
    f32 = (g8 / 255).astype(np.float32)
    np.testing.assert_array_equal(read_matte(write(tmp_path / "c.tiff", f32)), f32)
    gray_as_color = np.repeat(g8[..., None], 3, axis=2)
    assert np.array_equal(read_matte(write(tmp_path / "d.png", gray_as_color)), g8)
    opaque = np.concatenate([gray_as_color, np.full(g8.shape + (1,), 255, np.uint8)], axis=2)
    assert np.array_equal(read_matte(write(tmp_path / "e.png", opaque)), g8)


def test_read_matte_refusals(tmp_path):
    color = np.zeros((4, 5, 3), np.uint8)
    color[..., 2] = 9
    with pytest.raises(UnreadableImage, match="3 different color channels"):
        read_matte(write(tmp_path / "a.png", color))
    translucent = np.zeros((4, 5, 4), np.uint8)
    with pytest.raises(UnreadableImage, match="alpha channel that is not opaque"):
        read_matte(write(tmp_path / "b.png", translucent))
    with pytest.raises(UnreadableImage, match="cannot be read"):
        read_matte(tmp_path / "missing.png")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(UnreadableImage, match="not an image"):
        read_matte(tmp_path / "empty.png")

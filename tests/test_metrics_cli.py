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


@pytest.fixture
def clean(tmp_path):
    """pred/gt/trimap folders of three images without any problem."""
    for i, name in enumerate("xyz"):
        g = matte(10 + i)
        write(tmp_path / "gt" / f"{name}.png", g)
        write(tmp_path / "pred" / f"{name}.png", np.clip(g.astype(int) - 15, 0, 255).astype(np.uint8))
        t = np.full(g.shape, 128, np.uint8)
        t[:, :4 + i], t[:, -5:] = 0, 255
        write(tmp_path / "trimap" / f"{name}.png", t)
    return tmp_path / "pred", tmp_path / "gt", tmp_path / "trimap"


def rows_of(path):
    return list(csv.DictReader(path.open()))


@pytest.fixture
def no_evaluation(monkeypatch):
    """Fails the test if any metric is computed."""
    def refuse(*args, **kwargs):
        raise AssertionError("metrics computed although the run should have stopped before")

    monkeypatch.setattr("fastmatte.cli.eval.evaluate", refuse)


@pytest.mark.parametrize("option", ["--csv", "--json"])
def test_eval_refuses_an_existing_output_before_computing(clean, tmp_path, capsys, no_evaluation, option):
    pred, gt, _ = clean
    out = tmp_path / "results.txt"
    out.write_text("the user's file")
    assert main(["eval", str(pred), str(gt), option, str(out)]) == 2
    err = capsys.readouterr().err
    assert err == f"fastmatte eval: {out} exists; pass --force to replace it\n"
    assert out.read_text() == "the user's file"


@pytest.mark.parametrize("where,message", [
    ("a_file/rows.csv", "cannot create the folder {tmp}/a_file for rows.csv: {tmp}/a_file is not a "
                        "directory"),
    ("a_file/deeper/rows.csv", "cannot create the folder {tmp}/a_file/deeper for rows.csv: {tmp}/a_file "
                               "is not a directory"),
    ("a_folder", "{tmp}/a_folder is a directory"),
])
@pytest.mark.parametrize("option", ["--csv", "--json"])
def test_eval_refuses_an_unwritable_output_before_computing(clean, tmp_path, capsys, no_evaluation, where,
                                                            message, option):
    # Tests run as root, for whom chmod does not bite: a regular file where a folder should be.
    pred, gt, _ = clean
    (tmp_path / "a_file").write_text("")
    (tmp_path / "a_folder").mkdir()
    assert main(["eval", str(pred), str(gt), option, str(tmp_path / where), "--force"]) == 2
    assert capsys.readouterr().err == f"fastmatte eval: {message.format(tmp=tmp_path)}\n"


def test_eval_force_replaces_outputs_and_creates_folders(clean, tmp_path, capsys):
    pred, gt, trimap = clean
    out_csv, out_json = tmp_path / "old.csv", tmp_path / "new" / "sub" / "rows.json"
    out_csv.write_text("the user's file")
    args = ["eval", str(pred), str(gt), "--trimap-dir", str(trimap), "--csv", str(out_csv),
            "--json", str(out_json)]
    assert main(args + ["--force"]) == 0
    assert [r["name"] for r in rows_of(out_csv)] == ["x", "y", "z"]
    assert [r["name"] for r in json.loads(out_json.read_text())["images"]] == ["x", "y", "z"]
    # No temporary file left behind.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gt", "new", "old.csv", "pred", "trimap"]
    capsys.readouterr()
    assert main(args) == 2  # both exist now
    assert "exists; pass --force" in capsys.readouterr().err


def test_eval_writes_outputs_whole_or_not_at_all(clean, tmp_path, capsys, monkeypatch):
    pred, gt, _ = clean
    out = tmp_path / "rows.csv"
    out.write_text("the user's file")

    def disk_full(path, rows, names):
        path.write_text("name,sad\nx,")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("fastmatte.cli.eval.write_csv", disk_full)
    assert main(["eval", str(pred), str(gt), "--csv", str(out), "--force"]) == 1
    captured = capsys.readouterr()
    assert "sad" in captured.out  # the means were printed
    assert f"fastmatte eval: could not write {out}: No space left on device" in captured.err
    assert out.read_text() == "the user's file"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gt", "pred", "rows.csv", "trimap"]


def test_eval_of_nothing_fails(tmp_path, capsys):
    (tmp_path / "pred").mkdir()
    (tmp_path / "gt").mkdir()
    out = tmp_path / "rows.csv"
    assert main(["eval", str(tmp_path / "pred"), str(tmp_path / "gt"), "--csv", str(out)]) == 1
    err = capsys.readouterr().err
    assert f"fastmatte eval: nothing to evaluate: no name has both a prediction in {tmp_path / 'pred'}" in err
    assert not out.exists()
    write(tmp_path / "pred" / "a.png", matte(1))
    write(tmp_path / "gt" / "b.png", matte(1))
    assert main(["eval", str(tmp_path / "pred"), str(tmp_path / "gt")]) == 1
    err = capsys.readouterr().err
    assert "no ground truth named 'a'" in err and "no prediction named 'b'" in err
    assert "nothing to evaluate" in err


def test_eval_of_only_unreadable_files_fails(tmp_path, capsys):
    write(tmp_path / "gt" / "a.png", matte(1))
    (tmp_path / "pred").mkdir()
    (tmp_path / "pred" / "a.png").write_bytes(b"not an image")
    out = tmp_path / "rows.csv"
    assert main(["eval", str(tmp_path / "pred"), str(tmp_path / "gt"), "--csv", str(out)]) == 1
    captured = capsys.readouterr()
    assert "no image could be evaluated" in captured.err and "nan" not in captured.out
    assert not out.exists()


def trimap_run(pred, gt, trimap, out, *extra):
    return main(["eval", str(pred), str(gt), "--trimap-dir", str(trimap), "--csv", str(out), *extra])


def test_eval_trimap_with_127_is_a_problem_unless_snapped(clean, tmp_path, capsys):
    pred, gt, trimap = clean
    assert trimap_run(pred, gt, trimap, tmp_path / "want.csv") == 0
    bad = tmp_path / "trimap127"
    unknown = {}
    for path in trimap.iterdir():
        t = read_matte(path)
        unknown[path.stem] = int((t == 128).sum())
        write(bad / path.name, np.where(t == 128, 127, t).astype(np.uint8))
    capsys.readouterr()
    assert trimap_run(pred, gt, bad, tmp_path / "rows.csv") == 1
    err = capsys.readouterr().err
    for name, n in unknown.items():
        assert (f"{bad / name}.png: trimap holds values other than 0, 128, 255: 127 ({n} pixels); "
                "pass --snap-trimap to snap every value to the nearest of them") in err
    assert "no image could be evaluated" in err
    record = tmp_path / "snapped.json"
    assert trimap_run(pred, gt, bad, tmp_path / "snapped.csv", "--snap-trimap", "--json", str(record)) == 0
    assert f"--snap-trimap: {sum(unknown.values())} trimap pixels snapped" in capsys.readouterr().out
    assert json.loads(record.read_text())["snapped_trimap_pixels"] == sum(unknown.values())
    assert rows_of(tmp_path / "snapped.csv") == rows_of(tmp_path / "want.csv")


def test_eval_snaps_jpeg_trimaps(clean, tmp_path, capsys):
    pred, gt, trimap = clean
    assert trimap_run(pred, gt, trimap, tmp_path / "want.csv") == 0
    jpeg = tmp_path / "jpeg"
    jpeg.mkdir()
    for path in trimap.iterdir():
        assert cv2.imwrite(str(jpeg / f"{path.stem}.jpg"), read_matte(path), [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert len(np.unique(read_matte(jpeg / "x.jpg"))) > 3  # JPEG moved values off 0/128/255
    assert trimap_run(pred, gt, jpeg, tmp_path / "rows.csv") == 1
    assert "x.jpg: trimap holds values other than 0, 128, 255" in capsys.readouterr().err
    assert trimap_run(pred, gt, jpeg, tmp_path / "snapped.csv", "--snap-trimap") == 0
    assert rows_of(tmp_path / "snapped.csv") == rows_of(tmp_path / "want.csv")


def test_eval_float_tiff_stored_0_255_is_a_problem(clean, capsys):
    pred, gt, _ = clean
    as_255 = read_matte(pred / "y.png").astype(np.float32)
    (pred / "y.png").unlink()
    write(pred / "y.tif", as_255)
    assert main(["eval", str(pred), str(gt)]) == 1
    err = capsys.readouterr().err
    assert (f"{pred / 'y.tif'}: pred holds float values from 0 to {as_255.max():.6g}, outside 0..1: it "
            "looks like 0..255 data; save mattes as 8- or 16-bit images, or as float 0..1") in err
    assert "1 problem(s)" in err


def test_eval_snap_trimap_needs_trimaps(clean, capsys):
    pred, gt, _ = clean
    assert main(["eval", str(pred), str(gt), "--snap-trimap"]) == 2
    assert "--snap-trimap needs --trimap-dir" in capsys.readouterr().err


def test_eval_skips_hidden_files_such_as_a_killed_runs_temporary_files(tmp_path, capsys):
    write(tmp_path / "gt" / "a.png", matte(1))
    write(tmp_path / "pred" / "a.png", matte(1))
    (tmp_path / "pred" / ".a.123-abcd.partial.png").write_bytes(b"half a file")
    assert main(["eval", str(tmp_path / "pred"), str(tmp_path / "gt")]) == 0
    assert "problem" not in capsys.readouterr().err

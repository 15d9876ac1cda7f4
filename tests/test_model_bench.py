"""The end-to-end model benchmark: its records, the output check, the profile, the chart, and
`fastmatte bench --model`."""
import json
import math
import time

import cv2
import numpy as np
import pytest
import torch

import fastmatte.bench.model as benchmark_model
from fastmatte.bench.chart import BOTTOM, COLORS, write_chart
from fastmatte.bench.model import (OutputMismatch, check_backend, interleaved_ms, model_benchmark,
                                       model_inputs, parse_resolutions, prepare_model)
from fastmatte.bench.profiling import model_stages, stage_ms
from fastmatte.cli import main
from fastmatte.models import CRAMatting

SIZE = (100, 150)  # not multiples of 16: the model pads to 112 x 160, a 14 x 20 tile grid
KEYS = {"model", "resolution", "height", "width", "backend", "precision", "fps_median", "ms_median", "tiles",
        "capacity", "max_abs_diff_vs_eager", "error", "device", "torch", "commit", "model_kwargs"}


@pytest.fixture(scope="module")
def records():
    return model_benchmark("cra", [SIZE], "cpu", repeats=5, model=CRAMatting.tiny())


@pytest.fixture
def tiny_cra(monkeypatch):
    """`fastmatte bench --model cra` builds CRAMatting.tiny() instead of the paper's model."""
    monkeypatch.setattr(benchmark_model, "build_model", lambda name, **kwargs: CRAMatting.tiny(**kwargs))


def test_records_have_the_keys_and_types(records):
    assert [r["backend"] for r in records] == ["fastmatte", "eager"]  # no compile on the CPU by default
    for r in records:
        assert set(r) == KEYS
        assert (r["model"], r["resolution"], r["height"], r["width"]) == ("cra", "100x150", 100, 150)
        assert r["precision"] == "fp32" and r["torch"] == torch.__version__ and r["error"] is None
        assert r["device"].startswith("cpu")
        assert isinstance(r["tiles"], int) and isinstance(r["ms_median"], float)
        assert math.isclose(r["fps_median"] * r["ms_median"], 1e3)
        assert 0 <= r["max_abs_diff_vs_eager"] <= 1e-3
    assert records[1]["max_abs_diff_vs_eager"] == 0  # eager against itself
    assert json.loads(json.dumps(records)) == records


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_records_include_the_replayed_graph():
    records = model_benchmark("cra", [SIZE], "cuda", "fp16", repeats=5, compile=False,
                              model=CRAMatting.tiny())
    assert [r["backend"] for r in records] == ["fastmatte", "eager", "cuda-graph"]
    graph = records[2]
    assert graph["error"] is None and graph["max_abs_diff_vs_eager"] <= 2e-2
    assert graph["tiles"] == records[0]["tiles"] > 0


def test_tiles_are_the_trimaps_unknown_tiles_for_both_backends(records):
    # counted here from the trimap itself: tiles whose argmax is "unknown" (class 1)
    trimap = model_inputs(*SIZE, "cpu").trimap
    assert trimap.shape == (1, 3, 14, 20)
    unknown = int((trimap.argmax(1) == 1).sum())
    capacity = 28  # the default tile_capacity: 10% of the grid's 280 tiles
    assert 0 < unknown
    assert records[0]["tiles"] == records[1]["tiles"] == min(unknown, capacity)
    assert records[0]["capacity"] == records[1]["capacity"] == CRAMatting.tiny().capacity(1, 14, 20)


def test_random_weights_are_the_same_in_every_run_and_leave_the_global_rng_alone(tiny_cra):
    state = torch.random.get_rng_state()
    first, second, other = (prepare_model("cra", "cpu", seed=seed).state_dict() for seed in (0, 0, 1))
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert not all(torch.equal(first[k], other[k]) for k in first)
    assert torch.equal(torch.random.get_rng_state(), state)


def test_a_fastmatte_output_off_the_eager_one_stops_the_benchmark():
    class Skewed(torch.nn.Module):  # fastmatte's alpha 0.01 above eager's
        def __init__(self):
            super().__init__()
            self.inner = CRAMatting.tiny()

        def forward(self, image, trimap=None, backend=None):
            out = dict(self.inner(image, trimap=trimap, backend=backend))
            out["alpha"] = out["alpha"] + (0.01 if backend is None else 0.0)
            return out

    with pytest.raises(OutputMismatch, match="fastmatte output does not match"):
        model_benchmark("cra", [(64, 96)], "cpu", repeats=5, model=Skewed())
    assert model_benchmark("cra", [(64, 96)], "cpu", repeats=5, model=Skewed(), tolerance=0.02)


def test_a_failing_compile_backend_is_recorded_not_raised():
    def broken():
        raise RuntimeError("inductor: no C++ compiler\nmore lines")

    figures, out = check_backend(broken, "compile", torch.zeros(1), "cpu", 1e-3, "hd")
    assert out is None and figures["fps_median"] is None and figures["tiles"] is None
    assert figures["error"] == "RuntimeError: inductor: no C++ compiler"
    with pytest.raises(RuntimeError):
        check_backend(broken, "fastmatte", torch.zeros(1), "cpu", 1e-3, "hd")


def test_interleaved_timing_takes_turns_and_gives_medians():
    calls = []

    def run(name, seconds):
        return lambda: (calls.append(name), time.sleep(seconds))

    ms = interleaved_ms({"a": run("a", 0.002), "b": run("b", 0.012)}, "cpu", repeats=5)
    assert calls == ["a", "b"] * 5
    assert 2 <= ms["a"] < 10 <= 12 <= ms["b"] < 22


def test_parse_resolutions():
    assert parse_resolutions("hd,4k,64x96,100X150") == ["hd", "4k", (64, 96), (100, 150)]
    for bad in ("8k", "48x96", "64x", "64x96x2", "", "-64x96"):
        with pytest.raises(ValueError, match="--res must be a comma list of hd, 4k or HEIGHTxWIDTH"):
            parse_resolutions(bad, "--res")


def test_stage_times_follow_known_sleeps():
    class Sleep(torch.nn.Module):
        def __init__(self, seconds):
            super().__init__()
            self.seconds = seconds

        def forward(self, x):
            time.sleep(self.seconds)
            return x

    model = torch.nn.Sequential(Sleep(0.02), Sleep(0.005))
    times = stage_ms(lambda: model(torch.zeros(1)), {"slow": model[0], "fast": model[1]}, "cpu", iterations=3)
    # sleeps last at least as asked; the slack above is for a loaded machine. A fast stage timed
    # from the frame's start instead of its own would read >= 25 ms.
    assert 20 <= times["slow"] < 32 and 5 <= times["fast"] < 15
    assert times["frame"] >= times["slow"] + times["fast"]
    assert not model[0]._forward_hooks and not model[0]._forward_pre_hooks  # hooks removed


def test_model_stages_of_cra_include_the_fused_attention():
    stages = model_stages(CRAMatting.tiny())
    assert list(stages)[:3] == ["backbone", "decoder", "refiner"]
    assert "refiner.attention" in stages


@pytest.mark.parametrize("args, message", [
    (["--res", "hd,8k"], "--res must be a comma list of hd, 4k or HEIGHTxWIDTH sizes"),
    (["--res", "8x8"], "--res must be a comma list"),
    (["--precision", "fp16"], "--precision fp16 needs a CUDA device"),
    (["--repeats", "0"], "--repeats must be a positive number"),
    (["--json", "r.json"], "--json is for the op suites"),
    (["--ops", "select_tiles"], "--ops is for the op suites"),
])
def test_cli_argument_errors_name_the_option(args, message, capsys):
    assert main(["bench", "--model", "cra", "--device", "cpu", *args]) == 2
    assert message in capsys.readouterr().err


def test_cli_unknown_model_missing_gpu_and_model_only_options(capsys, tmp_path):
    assert main(["bench", "--model", "modnet2", "--device", "cpu"]) == 2
    assert "--model must be one of cra" in capsys.readouterr().err
    if not torch.cuda.is_available():
        assert main(["bench", "--model", "cra", "--device", "cuda"]) == 2
        assert "--device cuda, but no CUDA GPU" in capsys.readouterr().err
    assert main(["bench", "--profile"]) == 2
    assert "--profile applies with --model only" in capsys.readouterr().err
    (tmp_path / "file").write_text("mine")
    assert main(["bench", "--model", "cra", "--device", "cpu", "--out", str(tmp_path / "file")]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err
    assert (tmp_path / "file").read_text() == "mine"


def test_cli_end_to_end_writes_records_chart_and_profile(tmp_path, tiny_cra, capsys):
    (tmp_path / "notes.txt").write_text("mine")
    argv = ["bench", "--model", "cra", "--res", "64x96,80x128", "--device", "cpu", "--repeats", "5",
            "--profile", "--out", str(tmp_path)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    records = json.loads((tmp_path / "cra_cpu_fp32.json").read_text())
    assert [(r["resolution"], r["backend"]) for r in records] == [
        ("64x96", "fastmatte"), ("64x96", "eager"), ("80x128", "fastmatte"), ("80x128", "eager")]
    for r in records:  # fastmatte and eager profiled
        assert r["profile"]["ops"] and "refiner.attention" in r["profile"]["stages"]
    rows = [line.split() for line in printed.splitlines() if line.startswith(("64x96 ", "80x128 "))]
    assert [row[1] for row in rows] == ["fastmatte", "eager"] * 2 and rows[1][5] == "1.00x"
    assert int(rows[0][2]) == records[0]["tiles"]
    # the speedup column is eager ms / fastmatte ms, recomputed here from the records
    speedup = records[1]["ms_median"] / records[0]["ms_median"]
    assert float(rows[0][5][:-1]) == pytest.approx(speedup, abs=0.01)
    assert cv2.imread(str(tmp_path / "cra_cpu_fp32.png")) is not None
    profile = (tmp_path / "cra_cpu_fp32_profile.txt").read_text()
    assert "by stage" in profile and "backbone" in profile and "rest of forward" in profile
    assert "profile of cra 64x96 eager" in profile and "profile of cra 80x128 fastmatte" in profile
    table = (tmp_path / "cra_cpu_fp32.md").read_text()
    assert "measured by `fastmatte bench --model cra --res 64x96,80x128" in table
    assert f"| 64x96 | fastmatte | {records[0]['tiles']} | {records[0]['ms_median']:.2f} |" in table
    assert f"| {speedup:.2f}x |" in table
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "cra_cpu_fp32.json", "cra_cpu_fp32.md", "cra_cpu_fp32.png", "cra_cpu_fp32_profile.txt", "notes.txt"]
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_chart_bar_areas_follow_the_fps(tmp_path):
    base = dict(model="cra", device="cpu (test)", torch=torch.__version__, precision="fp32")
    records = [dict(base, resolution="hd", backend="fastmatte", fps_median=120.0),
               dict(base, resolution="hd", backend="eager", fps_median=30.0),
               dict(base, resolution="4k", backend="fastmatte", fps_median=60.0),
               dict(base, resolution="4k", backend="eager", fps_median=None)]
    image = cv2.imread(str(write_chart(records, tmp_path / "sub" / "chart.png")))
    assert image is not None and image.shape == (600, 960, 3)
    # bars are as wide as each other, so their pixel areas above the axis go as the FPS
    plot = image[:600 - BOTTOM]
    fast, eager = ((plot == COLORS[backend]).all(-1).sum() for backend in ("fastmatte", "eager"))
    assert fast / eager == pytest.approx(180 / 30, rel=0.03)
    with pytest.raises(ValueError, match="must end in .png"):
        write_chart(records, tmp_path / "chart.jpg")
    assert np.any(image < 100)  # the labels


def test_cli_existing_results_need_force_and_are_checked_before_timing(tmp_path, capsys, monkeypatch):
    import fastmatte.cli.bench_model as command

    argv = ["bench", "--model", "cra", "--res", "64x96", "--device", "cpu", "--repeats", "1",
            "--out", str(tmp_path)]
    (tmp_path / "cra_cpu_fp32.md").write_text("mine")
    timed = []
    monkeypatch.setattr(command, "model_benchmark", lambda *a, **k: timed.append(a) or [])
    assert main(argv) == 2
    assert f"{tmp_path / 'cra_cpu_fp32.md'} exists; pass --force to replace it" in capsys.readouterr().err
    assert timed == [] and (tmp_path / "cra_cpu_fp32.md").read_text() == "mine"
    blocker = tmp_path / "blocker"
    blocker.write_text("mine")
    assert main([*argv[:-1], str(blocker / "out")]) == 2
    assert "cannot create the folder" in capsys.readouterr().err and timed == []


def test_cli_op_bench_json_needs_force(tmp_path, capsys):
    path = tmp_path / "records.json"
    path.write_text("mine")
    argv = ["bench", "--res", "hd", "--suite", "tiles", "--ops", "select_tiles", "--repeats", "1",
            "--json", str(path)]
    assert main(argv) == 2
    assert "--json: " in capsys.readouterr().err and path.read_text() == "mine"
    assert main([*argv, "--force"]) == 0
    assert json.loads(path.read_text())[0]["op"] == "device copy"

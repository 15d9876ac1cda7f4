"""The end-to-end model benchmark: its records, the output check, the profile, the chart, and
`fastmatte bench --model`, for CRA (a photo and a trimap), RVM (a clip with its state carried,
and onnxruntime running the released ONNX file) and MODNet (predict on a photo, and onnxruntime
running an ONNX export of its eager network)."""
import json
import math
import sys
import time
import zipfile
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch

import fastmatte.bench.workloads.base as workload_base
import fastmatte.bench.workloads.modnet_onnxruntime as modnet_onnx
import fastmatte.models.rvm.refiner as rvm_refiner
from fastmatte.bench.chart import BOTTOM, COLORS, write_chart
from fastmatte.bench.model import (OutputMismatch, check_backend, interleaved_ms, model_benchmark,
                                   parse_resolutions)
from fastmatte.bench.profiling import model_stages, stage_ms
from fastmatte.bench.workloads import workload
from fastmatte.bench.workloads.base import Runner, prepare_model
from fastmatte.bench.workloads.cra import model_inputs
from fastmatte.bench.workloads.modnet import ONNX_TOLERANCE, MODNetWorkload, calibrate_batchnorm, photo_image
from fastmatte.bench.workloads.modnet_onnxruntime import OnnxNetwork, OnnxPredict
from fastmatte.bench.workloads.onnx_session import OnnxUnavailable, onnxruntime_version
from fastmatte.bench.workloads.rvm import CLIP_FRAMES, clip_frames
from fastmatte.bench.workloads.rvm_onnxruntime import OnnxStep, open_session
from fastmatte.cli import main
from fastmatte.models import RVM, CRAMatting
from fastmatte.models.modnet import MODNet
from fastmatte.models.rvm import RELEASE, auto_downsample_ratio
from fastmatte.ops import guided_upsample

SIZE = (100, 150)  # not multiples of 16: the model pads to 112 x 160, a 14 x 20 tile grid
KEYS = {"model", "resolution", "height", "width", "backend", "precision", "fps_median", "ms_median", "tiles",
        "capacity", "max_abs_diff_vs_eager", "error", "device", "torch", "commit", "model_kwargs"}
RVM_SIZE = (96, 160)  # the automatic downsample ratio is 1 here: the network runs at 96 x 160
RVM_KEYS = KEYS - {"tiles", "capacity"} | {"downsample_ratio", "weights", "clip", "onnxruntime"}
MODNET_SIZE = (70, 520)  # ZHKKKe's recipe keeps the size, floored to multiples of 32: 64 x 512, area resized
MODNET_KEYS = KEYS - {"tiles", "capacity"} | {"variant", "network", "weights", "photo", "onnxruntime"}
needs_onnxruntime = pytest.mark.skipif(onnxruntime_version() is None, reason="onnxruntime is not installed")


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread: on a loaded 2-core machine two OpenMP threads wait for each other a
    scheduler slice at a time (RVM's 30 ms frame at 96 x 160 takes 1-2 s); nothing here
    depends on the thread count."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def records():
    return model_benchmark("cra", [SIZE], "cpu", repeats=5, model=CRAMatting.tiny())


@pytest.fixture
def tiny_cra(monkeypatch):
    """`fastmatte bench --model cra` builds CRAMatting.tiny() instead of the paper's model."""
    monkeypatch.setattr(workload_base, "build_model", lambda name, **kwargs: CRAMatting.tiny(**kwargs))


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
    assert trimap.shape == (1, 3, 16, 32)  # the 1/8 grid of the image padded to multiples of 128
    unknown = int((trimap.argmax(1) == 1).sum())
    assert 0 < unknown
    assert records[0]["tiles"] == records[1]["tiles"] == unknown  # the default capacity: every cell
    assert records[0]["capacity"] == records[1]["capacity"] == CRAMatting.tiny().capacity(1, 16, 32) == 512


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
    def broken(frame, state):
        raise RuntimeError("inductor: no C++ compiler\nmore lines")

    figures, out = check_backend(Runner(broken, [None]), "compile", [torch.zeros(1)], "cpu", 1e-3, "hd")
    assert out is None and figures["fps_median"] is None and figures["max_abs_diff_vs_eager"] is None
    assert figures["error"] == "RuntimeError: inductor: no C++ compiler"
    with pytest.raises(RuntimeError):
        check_backend(Runner(broken, [None]), "fastmatte", [torch.zeros(1)], "cpu", 1e-3, "hd")


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
    assert list(stages)[:2] == ["encoder", "decoder"] and "roi_head" in stages
    assert "roi_head.transformer" in stages


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
        assert r["profile"]["ops"] and "roi_head.transformer" in r["profile"]["stages"]
    rows = [line.split() for line in printed.splitlines() if line.startswith(("64x96 ", "80x128 "))]
    assert [row[1] for row in rows] == ["fastmatte", "eager"] * 2 and rows[1][5] == "1.00x"
    assert int(rows[0][2]) == records[0]["tiles"]
    # the speedup column is eager ms / fastmatte ms, recomputed here from the records
    speedup = records[1]["ms_median"] / records[0]["ms_median"]
    assert float(rows[0][5][:-1]) == pytest.approx(speedup, abs=0.01)
    assert cv2.imread(str(tmp_path / "cra_cpu_fp32.png")) is not None
    profile = (tmp_path / "cra_cpu_fp32_profile.txt").read_text()
    assert "by stage" in profile and "encoder" in profile and "rest of forward" in profile
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


class SpyRVM(RVM):
    """RVM keeping each call: backend, image, the state it was given, its output, its ratio.
    skew: added to fastmatte's alpha (backend None), to make it wrong."""

    def __init__(self, skew=0.0):
        super().__init__()
        self.skew, self.calls = skew, []

    def forward(self, image, state=None, downsample_ratio=None, backend=None):
        out = super().forward(image, state, downsample_ratio, backend)
        if backend is None:
            out = dict(out, alpha=out["alpha"] + self.skew)
        self.calls.append(SimpleNamespace(backend=backend, image=image, state=state, out=out,
                                          ratio=downsample_ratio))
        return out


@pytest.fixture
def unfetched(monkeypatch, tmp_path):
    """An empty fastmatte cache: RVM's released weights and its wheel are not fetched, so the
    benchmark draws random weights."""
    monkeypatch.setenv("FASTMATTE_CACHE", str(tmp_path / "empty cache"))


def spy_on_rvm(monkeypatch, skew=0.0):
    """The benchmark's random-weights RVM becomes a SpyRVM; returns the list it is put in."""
    spies = []
    monkeypatch.setattr(workload_base, "build_model",
                        lambda name, **kwargs: spies.append(SpyRVM(skew)) or spies[-1])
    return spies


def test_rvm_runs_the_clip_with_its_state_carried_and_without_onnxruntime(monkeypatch, unfetched):
    spies = spy_on_rvm(monkeypatch)
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime raises ImportError
    records = model_benchmark("rvm", [RVM_SIZE], "cpu", repeats=5)
    assert [r["backend"] for r in records] == ["fastmatte", "eager", "onnxruntime"]
    for r in records:
        assert set(r) == RVM_KEYS and (r["model"], r["resolution"]) == ("rvm", "96x160")
        assert (r["weights"], r["clip"], r["onnxruntime"]) == ("random", "astronaut", None)
        assert r["downsample_ratio"] == auto_downsample_ratio(*RVM_SIZE) == 1.0
    fast, eager, ort = records
    assert fast["error"] is None and 0 <= fast["max_abs_diff_vs_eager"] <= 1e-3 and fast["ms_median"] > 0
    assert eager["max_abs_diff_vs_eager"] == 0
    assert ort["ms_median"] is None and ort["max_abs_diff_vs_eager"] is None
    assert ort["error"].startswith("OnnxUnavailable: onnxruntime is not installed: pip install onnxruntime")
    assert json.loads(json.dumps(records)) == records

    calls = [c for c in spies[0].calls if c.backend is None]  # fastmatte's: check, warm-up, timing
    assert len(calls) >= 3 + 2 + 5
    assert calls[0].state is None  # the clip starts from no state ...
    # ... and every later call is given the state the call before returned
    assert all(c.state is before.out["state"] for before, c in zip(calls, calls[1:]))
    assert all(c.ratio == 1.0 for c in calls)
    frames = [c.image for c in calls]  # the clip's frames, cycled
    assert all(frame is frames[i % CLIP_FRAMES] for i, frame in enumerate(frames))
    assert all(not torch.equal(a, b) for a, b in zip(frames[:CLIP_FRAMES - 1], frames[1:CLIP_FRAMES]))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_rvm_cuda_replays_a_graph_that_carries_the_state(unfetched):
    records = model_benchmark("rvm", [RVM_SIZE], "cuda", "fp16", repeats=5, compile=False)
    assert [r["backend"] for r in records] == ["fastmatte", "eager", "cuda-graph", "onnxruntime"]
    graph = records[2]  # checked over the clip's first 3 frames, the state carried through the graph
    assert graph["error"] is None and graph["max_abs_diff_vs_eager"] <= 2e-2 and graph["ms_median"] > 0
    assert records[3]["ms_median"] is None  # fp16: the released ONNX file is fp32 (or no onnxruntime)
    assert "released ONNX file is fp32" in records[3]["error"] or "not installed" in records[3]["error"]


def test_rvm_cli_writes_records_table_chart_and_stage_profile(tmp_path, unfetched, capsys):
    argv = ["bench", "--model", "rvm", "--res", "96x160", "--device", "cpu", "--repeats", "5", "--profile",
            "--out", str(tmp_path)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "model rvm (RANDOM weights: the released ones are not fetched (`fastmatte weights get rvm`)" \
        in printed
    assert f"a {CLIP_FRAMES}-frame pan across the astronaut photo" in printed
    assert f"onnxruntime {onnxruntime_version()}: the released ONNX file, intra-op threads 1 (as torch)" \
        in printed
    records = json.loads((tmp_path / "rvm_cpu_fp32.json").read_text())
    assert [r["backend"] for r in records] == ["fastmatte", "eager", "onnxruntime"]
    assert {r["weights"] for r in records} == {"random"}
    assert "the random weights cannot match: `fastmatte weights get rvm`" in records[2]["error"]
    rows = [line.split() for line in printed.splitlines() if line.startswith("96x160 ")]
    assert [row[1] for row in rows] == ["fastmatte", "eager", "onnxruntime"]
    eager = records[1]
    assert rows[1][2:6] == ["1", f"{eager['ms_median']:.2f}", f"{eager['fps_median']:.2f}", "1.00x"]
    assert rows[0][6] == "-" and rows[2][2] == "failed:"  # no onnxruntime figure to compare with
    for r in records[:2]:  # fastmatte and eager, stage by stage
        stages = r["profile"]["stages"]
        assert list(stages)[:5] == ["backbone", "aspp", "decoder", "project", "refiner"]
        assert stages["refiner.low-res"] > 0 and stages["refiner.guided_upsample"] > 0
    assert "profile" not in records[2]
    profile = (tmp_path / "rvm_cpu_fp32_profile.txt").read_text()
    assert "refiner.guided_upsample" in profile and "rest of forward" in profile
    assert "profile of rvm 96x160 fastmatte" in profile
    table = (tmp_path / "rvm_cpu_fp32.md").read_text()
    assert "Random weights; each call is the next frame of a pan across the astronaut photo" in table
    assert ("| resolution | backend | ratio | ms | FPS | vs eager | vs compile | vs onnxruntime | "
            "max abs diff vs eager |") in table
    assert f"| 96x160 | eager | 1 | {records[1]['ms_median']:.2f} |" in table
    assert "| 96x160 | onnxruntime | 1 | failed: OnnxUnavailable: onnxruntime runs the released file" \
        in table
    assert cv2.imread(str(tmp_path / "rvm_cpu_fp32.png")) is not None


def test_rvm_cli_exits_1_when_fastmatte_is_off(monkeypatch, unfetched, tmp_path, capsys):
    spy_on_rvm(monkeypatch, skew=0.01)
    argv = ["bench", "--model", "rvm", "--res", "96x160", "--device", "cpu", "--repeats", "5", "--out",
            str(tmp_path)]
    assert main(argv) == 1
    assert ("fastmatte output does not match the eager model at 96x160 (frame 1 of the clip, the state "
            "carried): max |alpha - eager alpha| = 0.01") in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_onnxruntime_runs_the_released_file_and_a_mismatch_exits_1(request, tmp_path, monkeypatch, capsys):
    # skips, saying why, when the release is neither in this machine's cache nor downloadable
    monkeypatch.setenv("FASTMATTE_CACHE", str(request.getfixturevalue("release").cache))
    size = (144, 640)  # ratio 0.8: the network runs at 115 x 512
    records = model_benchmark("rvm", [size], "cpu", repeats=5)
    assert [r["backend"] for r in records] == ["fastmatte", "eager", "onnxruntime"]
    assert {r["weights"] for r in records} == {"released"} and records[0]["downsample_ratio"] == 0.8
    ort = records[2]
    assert ort["error"] is None and ort["ms_median"] > 0
    assert 0 < ort["max_abs_diff_vs_eager"] <= 1e-4  # its own computation, over 3 frames, state carried

    step = OnnxStep.__call__

    def skewed(self, frame, state):  # right at the clip's first frame, 2e-4 off from the second on
        out, new_state = step(self, frame, state)
        return dict(out, alpha=out["alpha"] + 2e-4 * (state is not None)), new_state

    monkeypatch.setattr(OnnxStep, "__call__", skewed)
    argv = ["bench", "--model", "rvm", "--res", "144x640", "--device", "cpu", "--repeats", "5", "--out",
            str(tmp_path)]
    assert main(argv) == 1
    out, err = capsys.readouterr()
    assert "model rvm (released weights;" in out
    assert ("onnxruntime output does not match the eager model at 144x640 (frame 2 "
            "of the clip, the state carried)") in err and "> tolerance 0.0001" in err
    assert list(tmp_path.iterdir()) == []


def test_an_onnxruntime_that_cannot_run_is_recorded(monkeypatch, tmp_path):
    monkeypatch.setenv("FASTMATTE_CACHE", str(tmp_path))
    frame = torch.rand(1, 3, 64, 96)

    def error(weights="released", dtype=torch.float32):
        runner = Runner(OnnxStep(1.0, weights), [frame.to(dtype)])
        figures, out = check_backend(runner, "onnxruntime", [frame[:, :1]], "cpu", 1e-4, "64x96")
        assert out is None and figures["ms_median"] is None
        return figures["error"]

    assert "onnxruntime runs the released file, whose alpha the random weights cannot match" in \
        error("random")
    assert "the released ONNX file is fp32: onnxruntime is timed with --precision fp32 only, not float16" in \
        error(dtype=torch.float16)
    missing = tmp_path / "downloads" / RELEASE.wheel
    assert f"RVM's ONNX release is not usable here: {missing} is missing" in error()
    wheel = tmp_path / "downloads" / RELEASE.wheel
    wheel.parent.mkdir()
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr(RELEASE.member, b"not the release")
    assert f"{RELEASE.wheel}!{RELEASE.member} has sha256 " in error()
    assert f"expected {RELEASE.sha256}: refused (not the released file)" in error()
    with pytest.raises(OnnxUnavailable, match="onnxruntime has no CUDA provider here"):
        open_session(torch.device("cuda"), torch.float32, "released")
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    assert error().startswith("OnnxUnavailable: onnxruntime is not installed: pip install onnxruntime")


def test_the_clip_pans_across_the_astronaut_or_without_scikit_image_the_sample_portrait(monkeypatch):
    frames, clip = clip_frames(*RVM_SIZE)
    assert clip == "astronaut" and len(frames) == CLIP_FRAMES
    assert frames[0].shape == (96, 160, 3) and frames[0].dtype == np.uint8
    assert not np.array_equal(frames[0], frames[1])
    monkeypatch.setitem(sys.modules, "skimage", None)
    stand_in, clip = clip_frames(*RVM_SIZE)
    assert clip == "sample portrait" and len(stand_in) == CLIP_FRAMES
    assert not np.array_equal(stand_in[0], frames[0])


def test_rvm_stages_split_the_refiner_and_leave_the_model_as_it_was():
    model = RVM().eval()
    stages = model_stages(model)
    assert list(stages) == ["backbone", "aspp", "decoder", "project", "refiner", "refiner.low-res",
                            "refiner.guided_upsample"]
    image = torch.rand(1, 3, 64, 96)
    with torch.inference_mode():
        times = stage_ms(lambda: model(image), stages, "cpu", iterations=2)
    assert 0 < times["refiner.low-res"] and 0 < times["refiner.guided_upsample"]
    assert times["refiner.low-res"] + times["refiner.guided_upsample"] <= times["refiner"]
    assert "coefficients" not in vars(model.refiner) and rvm_refiner.guided_upsample is guided_upsample


def test_chart_colours_the_onnxruntime_bars(tmp_path):
    base = dict(model="rvm", device="cpu (test)", torch=torch.__version__, precision="fp32",
                weights="released")
    records = [dict(base, resolution="hd", backend="fastmatte", fps_median=3.0),
               dict(base, resolution="hd", backend="onnxruntime", fps_median=4.5)]
    plot = cv2.imread(str(write_chart(records, tmp_path / "chart.png")))[:600 - BOTTOM]
    fast, ort = ((plot == COLORS[backend]).all(-1).sum() for backend in ("fastmatte", "onnxruntime"))
    assert ort / fast == pytest.approx(4.5 / 3.0, rel=0.03)


def test_rvm_cli_exits_1_on_damaged_fetched_weights(monkeypatch, tmp_path, capsys):
    weights = tmp_path / "cache" / "weights" / RELEASE.weights_file
    weights.parent.mkdir(parents=True)
    weights.write_bytes(b"not safetensors")
    monkeypatch.setenv("FASTMATTE_CACHE", str(tmp_path / "cache"))
    argv = ["bench", "--model", "rvm", "--res", "96x160", "--device", "cpu", "--out", str(tmp_path / "out")]
    assert main(argv) == 1
    assert str(weights) in capsys.readouterr().err and not (tmp_path / "out").exists()


class SpyMODNet(MODNet):
    """MODNet keeping each predict call: backend, image, its alpha. skew: added to fastmatte's
    alpha (backend None), to make it wrong."""

    def __init__(self, skew=0.0, **kwargs):
        super().__init__(**kwargs)
        self.skew, self.calls = skew, []

    def predict(self, image, backend=None):
        alpha = super().predict(image, backend) + (self.skew if backend is None else 0.0)
        self.calls.append(SimpleNamespace(backend=backend, image=image, alpha=alpha))
        return alpha


def test_modnet_cli_times_predict_on_a_photo_and_writes_records_table_chart(monkeypatch, tmp_path, capsys):
    spies = []
    monkeypatch.setattr(workload_base, "build_model",
                        lambda name, **kwargs: spies.append(SpyMODNet(**kwargs)) or spies[-1])
    argv = ["bench", "--model", "modnet", "--res", "70x520", "--device", "cpu", "--repeats", "5", "--out",
            str(tmp_path)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "model modnet (RANDOM weights from a fixed seed, BatchNorm statistics measured on a photo" \
        in printed
    assert "input: the astronaut photo at each resolution, every call the same" in printed
    version = onnxruntime_version()
    assert (f"onnxruntime {version}: the eager network exported to ONNX, intra-op threads 1 (as torch)"
            if version else "onnxruntime not installed") in printed
    records = json.loads((tmp_path / "modnet_cpu_fp32.json").read_text())
    assert [r["backend"] for r in records] == ["fastmatte", "eager", "onnxruntime"]
    for r in records:
        assert set(r) == MODNET_KEYS | {"command"}
        assert (r["model"], r["resolution"], r["model_kwargs"]) == ("modnet", "70x520", {})
        assert (r["variant"], r["network"], r["weights"], r["photo"], r["onnxruntime"]) == (
            "zhkkke", "64x512", "random", "astronaut", version)
    fast, eager, ort = records
    assert fast["error"] is None and 0 <= fast["max_abs_diff_vs_eager"] <= 1e-3 and fast["ms_median"] > 0
    assert eager["max_abs_diff_vs_eager"] == 0
    if version:  # the exported network, between the recipe's torch resizes
        assert ort["error"] is None and ort["ms_median"] > 0
        assert 0 < ort["max_abs_diff_vs_eager"] <= ONNX_TOLERANCE
    else:
        assert ort["error"].startswith("OnnxUnavailable: onnxruntime is not installed: pip install")

    calls = spies[0].calls  # predict's: the eager reference, then each backend's check, warm-up, timing
    assert len([c for c in calls if c.backend is None]) >= 1 + 2 + 5
    assert len([c for c in calls if c.backend == "torch"]) >= 1 + 1 + 2 + 5
    image = calls[0].image  # the same photo, every call
    assert all(c.image is image for c in calls) and image.shape == (1, 3, 70, 520)
    assert torch.equal(image, photo_image(*MODNET_SIZE, "cpu")[0])

    rows = [line.split() for line in printed.splitlines() if line.startswith("70x520 ")]
    assert [row[1] for row in rows] == ["fastmatte", "eager", "onnxruntime"]
    assert rows[1][2:5] == [f"{eager['ms_median']:.2f}", f"{eager['fps_median']:.2f}", "1.00x"]
    table = (tmp_path / "modnet_cpu_fp32.md").read_text()
    assert "measured by `fastmatte bench --model modnet --res 70x520" in table
    assert f"| 70x520 | eager | {eager['ms_median']:.2f} | {eager['fps_median']:.1f} | 1.00x |" in table
    if version:
        assert ("| resolution | backend | ms | FPS | vs eager | vs compile | vs onnxruntime | "
                "max abs diff vs eager |") in table
    assert cv2.imread(str(tmp_path / "modnet_cpu_fp32.png")) is not None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["modnet_cpu_fp32.json", "modnet_cpu_fp32.md",
                                                          "modnet_cpu_fp32.png"]
    # --profile's stages: the network's branches (the recipe's resizes are the rest of predict)
    assert list(model_stages(spies[0])) == ["backbone", "lr_branch", "hr_branch", "f_branch"]


def test_random_modnet_weights_have_batchnorm_statistics_of_a_photo_and_given_ones_are_kept():
    state = torch.random.get_rng_state()
    work = MODNetWorkload()
    model = work.prepare(torch.device("cpu"), torch.float32)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert (work.weights, work.variant, model.training) == ("random", "zhkkke", False)
    raw = prepare_model("modnet", "cpu")  # the same seed's weights, the statistics as initialized
    calibrated, initial = model.state_dict(), raw.state_dict()
    changed = {key for key in calibrated if not torch.equal(calibrated[key], initial[key])}
    statistics = ("running_mean", "running_var", "num_batches_tracked")
    assert changed and all(key.endswith(statistics) for key in changed)
    assert {m.momentum for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)} == {0.1}
    image = photo_image(64, 512, "cpu")[0]
    with torch.inference_mode():
        features = [m.backbone((image - 0.5) / 0.5)[-1].std().item() for m in (raw, model)]
    assert features[0] < 1e-6 and 0.05 < features[1] < 20  # vanishing at init; unit scale calibrated

    given = MODNet().eval()
    before = {key: value.clone() for key, value in given.state_dict().items()}
    assert work.prepare(torch.device("cpu"), torch.float32, model=given) is given and work.weights == "given"
    assert all(torch.equal(before[key], value) for key, value in given.state_dict().items())
    other = calibrate_batchnorm(MODNet(), image)
    assert not other.training and not torch.equal(other.backbone.features[0][1].running_var, torch.ones(32))


@needs_onnxruntime
def test_modnet_onnxruntime_exports_the_eager_network_once_per_shape_and_matches_it(monkeypatch):
    exported = []  # (shape, ONNX bytes) of every export
    export = modnet_onnx.export_network

    def counted(model, shape):
        exported.append((shape, export(model, shape)))
        return exported[-1][1]

    monkeypatch.setattr(modnet_onnx, "export_network", counted)
    work, cpu = MODNetWorkload(), torch.device("cpu")
    model = work.prepare(cpu, torch.float32)
    with torch.inference_mode():
        for size in (MODNET_SIZE, (64, 540)):  # both run the network at 64 x 512
            inputs = work.inputs(*size, cpu, torch.float32)
            eager = work.runner(model, "eager", inputs)()["alpha"]
            ort = work.runner(model, "onnxruntime", inputs)
            alpha = ort()["alpha"]
            assert alpha.shape == (1, 1, *size) and inputs.network == "64x512"
            assert 0 < (alpha - eager).abs().max() <= ONNX_TOLERANCE == work.tolerance("onnxruntime", "fp32")
        skewed = Runner(lambda image, state: ({"alpha": ort()["alpha"] + 2 * ONNX_TOLERANCE}, None), [None])
        with pytest.raises(OutputMismatch, match="output does not match the eager model at 64x540"):
            check_backend(skewed, "onnxruntime", [eager], "cpu", ONNX_TOLERANCE, "64x540")
    assert [shape for shape, _ in exported] == [(1, 3, 64, 512)] and not model.training
    session = work.onnx.sessions[(1, 3, 64, 512)]
    options = session.get_session_options()
    threads = (options.intra_op_num_threads, options.inter_op_num_threads)
    assert threads == (torch.get_num_threads(), 1) == (1, 1)
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert session.get_providers() == ["CPUExecutionProvider"]
    try:
        import onnx
    except ImportError:
        return
    graph = onnx.load_from_string(exported[0][1])
    assert graph.opset_import[0].version == 17
    ops = {node.op_type for node in graph.graph.node}
    assert {"InstanceNormalization", "BatchNormalization", "Resize", "Sigmoid"} <= ops


def test_a_modnet_onnxruntime_that_cannot_run_says_why(monkeypatch):
    model = MODNet().eval()
    image = photo_image(*MODNET_SIZE, "cpu")[0]

    def error(model=model, image=image):
        run = Runner(OnnxPredict(OnnxNetwork(model), "zhkkke"), [image])
        figures, out = check_backend(run, "onnxruntime", [image[:, :1]], "cpu", ONNX_TOLERANCE, "70x520")
        assert out is None and figures["ms_median"] is None
        return figures["error"]

    assert "MODNet's ONNX export is fp32: onnxruntime is timed with --precision fp32 only, not float16" in \
        error(MODNet().half().eval(), image.half())

    def broken(*args, **kwargs):
        raise RuntimeError("unsupported operator\nmore lines")

    monkeypatch.setattr(torch.onnx, "export", broken)
    if onnxruntime_version():
        assert error() == ("OnnxUnavailable: torch.onnx.export of MODNet's eager network at 64x512 failed: "
                           "RuntimeError: unsupported operator")
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    assert error() == ("OnnxUnavailable: onnxruntime is not installed: pip install onnxruntime "
                       "(onnxruntime-gpu for CUDA) to time MODNet's ONNX export")
    with pytest.raises(ValueError, match="must be one of fastmatte, eager, compile, cuda-graph, onnxruntime"):
        MODNetWorkload().runner(model, "tensorrt", None)


def test_modnet_paddleseg_variant_runs_its_own_recipe_in_every_backend():
    work, cpu = MODNetWorkload(), torch.device("cpu")
    model = work.prepare(cpu, torch.float32, {"variant": "paddleseg"})
    inputs = work.inputs(64, 64, cpu, torch.float32)  # PaddleSeg's recipe: the short side to 512
    assert (model.variant, work.figures(inputs)["variant"]) == ("paddleseg", "paddleseg")
    assert inputs.network == "512x512"
    backends = ["fastmatte", "eager"] + ["onnxruntime"] * bool(onnxruntime_version())
    with torch.inference_mode():
        alphas = {backend: work.runner(model, backend, inputs)()["alpha"] for backend in backends}
        assert torch.equal(alphas["eager"], model.predict(inputs.image, backend="torch"))
    for backend in backends:
        assert alphas[backend].shape == (1, 1, 64, 64)
        assert (alphas[backend] - alphas["eager"]).abs().max() <= work.tolerance(backend, "fp32")


def test_paddleseg_workloads_size_the_network_as_limit_short_does():
    work, cpu = workload("ppmattingv2"), torch.device("cpu")
    work.prepare(cpu, torch.float32)
    assert work.network_size(work.model, 1080, 1920) == (512, 896)  # HD and 4K: 512 x 910, floored
    assert work.network_size(work.model, 2160, 3840) == (512, 896)
    assert work.network_size(work.model, 300, 250) == (288, 224)  # not enlarged, floored
    big = SimpleNamespace(max_short=1024)  # the human_1024 release's configuration
    assert workload("ppmatting").network_size(big, 1080, 1920) == (1024, 1792)


def test_ppmatting_compares_backends_past_a_few_argmax_flips():
    work, reference = workload("ppmatting"), torch.zeros(1, 1, 100, 1000)  # 1e-3 of 10^5 pixels: 100
    flipped = reference.clone()
    flipped[0, 0, 5, 5:50] = 1.0  # near-tie pixels that took the other class
    assert work.difference(flipped, reference) == 0.0
    flipped[0, 0, 50:52, :100] = 0.25  # a broader difference is not set aside
    assert work.difference(flipped, reference) == 0.25
    assert workload("ppmattingv2").difference(flipped, reference) == 1.0  # no argmax there: plain max


def test_ppmattingv2_cli_times_predict_on_a_photo(tmp_path, capsys):
    argv = ["bench", "--model", "ppmattingv2", "--res", "64x96", "--device", "cpu", "--repeats", "2", "--out",
            str(tmp_path)]
    assert main(argv) == 0
    assert "(no released PP-MattingV2 weights here)" in capsys.readouterr().out
    records = json.loads((tmp_path / "ppmattingv2_cpu_fp32.json").read_text())
    assert [r["backend"] for r in records] == ["fastmatte", "eager"]
    for r in records:
        assert (r["network"], r["weights"], r["photo"]) == ("64x96", "random", "astronaut")
        assert "variant" not in r and "onnxruntime" not in r
        assert r["error"] is None and r["max_abs_diff_vs_eager"] <= 1e-3
    table = (tmp_path / "ppmattingv2_cpu_fp32.md").read_text()
    assert "Random weights; the astronaut photo, network input 64x96" in table

"""The package around the operators: info(), the import fallback, the command line."""
import json
import subprocess
import sys

import pytest
import torch

import fastmatte
from fastmatte.cli import main


def test_info_reports_backends():
    info = fastmatte.info()
    assert info["fastmatte"] == fastmatte.__version__
    assert info["torch"] == torch.__version__
    assert set(info["backends"]) == {"cpu", "cuda", "triton", "torch"}
    assert info["backends"]["cpu"] is True, f"compiled extension missing: {info['extension_error']}"
    assert info["backends"]["cuda"] == torch.cuda.is_available()
    assert (info["gpu"] is None) == (not torch.cuda.is_available())


def test_import_without_extension_falls_back_with_one_warning():
    # A fresh interpreter in which fastmatte._C cannot be imported.
    script = """
import sys, warnings, importlib.abc
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "fastmatte._C":
            raise ImportError("blocked for the test")
sys.meta_path.insert(0, Block())
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    import fastmatte, torch
messages = [str(w.message) for w in caught if "fastmatte" in str(w.message)]
assert len(messages) == 1 and "falls back to its eager PyTorch reference" in messages[0], messages
assert fastmatte.info()["backends"]["cpu"] is False
sel = fastmatte.ops.select_tiles(torch.randn(1, 3, 4, 5), 3)
ref = fastmatte.reference.select_tiles(torch.randn(1, 3, 4, 5), 3)
assert sel.tiles.shape == ref[0].shape == (3, 3)
try:
    fastmatte.ops.select_tiles(torch.randn(1, 3, 4, 5), 3, backend="cpu")
except ValueError as error:
    assert "fastmatte._C is not loaded" in str(error)
else:
    raise AssertionError("backend='cpu' must refuse without the extension")
print("ok")
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_cli_info(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "backends" in out and torch.__version__ in out


def test_cli_bench_writes_records_and_their_table(tmp_path, capsys):
    path = tmp_path / "records.json"
    argv = ["bench", "--res", "hd", "--suite", "tiles", "--ops", "select_tiles", "--repeats", "2",
            "--json", str(path)]
    assert main(argv) == 0
    copy, *records = json.loads(path.read_text())
    assert (copy["op"], copy["backend"]) == ("device copy", "reference") and copy["gbps"] > 0
    assert {r["backend"] for r in records} == {"fastmatte", "eager"}
    for r in records:
        assert r["op"] == "select_tiles" and r["resolution"] == "hd" and r["precision"] == "fp32"
        assert r["median_ms"] > 0 and r["gbps"] > 0 and r["tiles"] > 0
        # time over the floor = time / (fewest bytes / copy speed) = copy speed / achieved speed
        assert r["floor_ratio"] == pytest.approx(copy["gbps"] / r["gbps"])
        assert {"device", "torch", "commit"} <= set(r) and r["command"] == "fastmatte " + " ".join(argv)
    assert "select_tiles" in capsys.readouterr().out
    fast, eager = sorted(records, key=lambda r: r["backend"] != "fastmatte")
    row = next(line for line in path.with_suffix(".md").read_text().splitlines()
               if line.startswith("| select_tiles |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert float(cells[3]) == pytest.approx(fast["median_ms"], abs=1e-3)
    assert float(cells[6][:-1]) == pytest.approx(eager["median_ms"] / fast["median_ms"], abs=0.05)
    assert float(cells[9]) == pytest.approx(fast["floor_ratio"], abs=0.005)


def test_cli_bench_reports_a_failed_compile_and_keeps_going(tmp_path, capsys, monkeypatch):
    def refuse(fn, *args, **kwargs):
        raise RuntimeError("no compiler here\nsecond line")

    monkeypatch.setattr(torch, "compile", refuse)
    path = tmp_path / "records.json"
    argv = ["bench", "--suite", "tiles", "--ops", "select_tiles,gather_tiles", "--repeats", "1", "--compile",
            "--json", str(path)]
    assert main(argv) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if "compile failed" in line]
    assert len(lines) == 2 and lines[0].endswith("compile failed: RuntimeError: no compiler here")
    assert {r["backend"] for r in json.loads(path.read_text())} == {"reference", "fastmatte", "eager"}


@pytest.mark.parametrize("argv, message", [
    (["--repeats", "0"], "--repeats must be a positive"),
    (["--suite", "tiles,nope"], "--suite must be a comma list"),
    (["--profile"], "--profile applies with --model only"),
])
def test_cli_bench_refuses_bad_options(argv, message, capsys):
    assert main(["bench", "--res", "hd"] + argv) == 2
    assert message in capsys.readouterr().err


def test_cli_rejects_unknown_resolution(capsys):
    assert main(["bench", "--res", "8k"]) == 2
    assert "--res must be" in capsys.readouterr().err


def test_forced_cuda_backend_of_a_triton_only_op_says_so(monkeypatch):
    """On a CUDA build, backend="cuda" for an op whose GPU kernel is Triton names the op and
    points at backend="triton" instead of claiming the build lacks CUDA."""
    from fastmatte.ops import _backend

    monkeypatch.setattr(_backend, "has_kernel", lambda op, key: op == "select_tiles")
    backends = _backend.OpBackends("gated_conv", triton=True)
    reason = backends.why_not("cuda", torch.device("cuda"))
    assert reason == "gated_conv has no CUDA C++ kernel (its GPU kernel is Triton: backend='triton')"

"""`fastmatte matte` as users run it, in subprocesses: killed at random moments (SIGKILL),
stopped by Ctrl-C (SIGINT) or SIGTERM, and run twice at once on the same outputs. Whatever
happens, every file left in the output folder decodes completely, or is a hidden temporary file
that later runs take neither for an input nor for an output.

The model is CRAMatting's tiny configuration (carried by a `fastmatte convert` file) on 64x96
frames, so that a run takes seconds, most of them spent importing torch. Nothing is timed:
delays only choose when to kill."""
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from fastmatte.cli import main
from fastmatte.io import read_image, write_image
from helpers import subprocess_env
from fastmatte.io.atomic import PARTIAL
from fastmatte.io.video import VideoReader, VideoWriter
from fastmatte.models import MODELS, CRAMatting

H, W = 64, 96
FRAMES = 30  # the video's temporary files then live for most of a run
KILLS = 15


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    folder = tmp_path_factory.mktemp("weights")
    torch.save(CRAMatting.tiny().state_dict(), folder / "tiny.pt")
    settings = [f"--set={key}={value!r}" for key, value in MODELS["cra"].configurations["tiny"].items()]
    assert main(["convert", "cra", str(folder / "tiny.pt"), str(folder / "tiny.safetensors"), *settings]) == 0
    return folder / "tiny.safetensors"


def make_inputs(folder, images=2, frames=FRAMES, size=(H, W)) -> list[str]:
    """a0.png, a1.png ... and clip.mp4 (taken in that order): noise frames of `size` (h, w)."""
    folder.mkdir()
    rng = np.random.default_rng(size)
    for i in range(images):
        write_image(folder / f"a{i}.png", rng.integers(0, 256, (*size, 3), dtype=np.uint8))
    with VideoWriter(folder / "clip.mp4", 10, size[::-1]) as writer:
        for _ in range(frames):
            writer.write(rng.integers(0, 256, (*size, 3), dtype=np.uint8))
    return sorted(p.name for p in folder.iterdir())


def outputs_of(inputs) -> set[str]:
    """The outputs of `inputs` (file names) with a composite."""
    return {f"{Path(name).stem}_{kind}{Path(name).suffix}" for name in inputs
            for kind in ("alpha", "composite")}


class Run:
    """`python -m fastmatte matte ARGS` in a subprocess, its stderr in a file."""

    def __init__(self, *args, log: Path):
        self.log = log
        # One thread each: the frames are tiny, and two runs at once on a shared machine would
        # otherwise spin for cores.
        env = subprocess_env(OMP_NUM_THREADS="1")
        with open(log, "wb") as stderr:
            self.process = subprocess.Popen([sys.executable, "-m", "fastmatte", "matte", *map(str, args)],
                                            stdout=subprocess.DEVNULL, stderr=stderr, env=env)

    def wait_until(self, condition, timeout=120):
        """Poll until condition() holds; fails if the run ends first or it takes too long."""
        deadline = time.monotonic() + timeout
        while not condition():
            assert self.process.poll() is None, f"the run ended first:\n{self.stderr()}"
            assert time.monotonic() < deadline, f"still waiting after {timeout} s:\n{self.stderr()}"
            time.sleep(0.01)

    def started(self) -> bool:
        """Whether it has said anything (the progress bar starts once the model is built)."""
        return self.log.stat().st_size > 0

    def wait(self) -> int:
        return self.process.wait(timeout=300)

    def stderr(self) -> str:
        return self.log.read_text(errors="replace")


def check_folder(folder, expected, frames=FRAMES) -> list[Path]:
    """Asserts that every file in `folder` is one of `expected` and decodes completely (videos:
    all `frames`), or is a hidden temporary file; returns the temporary files."""
    temporary = []
    for path in folder.iterdir():
        if path.name.startswith("."):
            assert PARTIAL in path.name, path
            temporary.append(path)
        elif path.suffix == ".png":
            assert path.name in expected and read_image(path).shape == (H, W, 3), path
        else:
            assert path.name in expected, path
            with VideoReader(path) as reader:  # an MP4 without its index cannot even be opened
                assert (reader.frame_count, len(list(reader))) == (frames, frames), path
            assert not reader.ended_early
    return temporary


def test_runs_killed_at_random_moments_leave_only_whole_files(tiny_weights, tmp_path):
    """Into the input folder itself (-o = the input folder), so that the outputs and leftovers
    of each killed run lie among the inputs of the next one, with --force."""
    folder = tmp_path / "photos"
    inputs = make_inputs(folder)
    expected = set(inputs) | outputs_of(inputs)
    command = [folder, "-o", folder, "--weights", tiny_weights, "--background", "green", "--force"]
    whole = Run(*command, log=tmp_path / "whole.log")
    whole.wait_until(whole.started)
    began = time.monotonic()
    assert whole.wait() == 0, whole.stderr()
    work = time.monotonic() - began  # the window the kills are spread over
    assert sorted(p.name for p in folder.iterdir()) == sorted(expected)
    rng, killed_while_writing = random.Random(0), 0
    for trial in range(KILLS):
        leftovers = len(list(folder.glob(".*")))
        run = Run(*command, log=tmp_path / f"kill{trial}.log")
        if trial % 2:  # anywhere in the run's work
            run.wait_until(run.started)
            time.sleep(rng.uniform(0, work))
        else:  # soon after its first temporary file is seen, most likely the video's (the longest lived)
            mark = f".{run.process.pid}-"
            run.wait_until(lambda: any(mark in p.name for p in folder.glob(".*")))
            time.sleep(rng.uniform(0, 0.25))
        run.process.kill()
        run.wait()
        killed_while_writing += len(check_folder(folder, expected)) > leftovers
    # If no kill ever left a temporary file, they all came too early or too late, and this test
    # would test nothing.
    assert killed_while_writing > 0
    again = Run(*command, log=tmp_path / "again.log")
    assert again.wait() == 0 and "Traceback" not in again.stderr(), again.stderr()
    check_folder(folder, expected)
    assert {p.name for p in folder.iterdir() if not p.name.startswith(".")} == expected


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_sigint_and_sigterm_stop_cleanly(tiny_weights, tmp_path, signum):
    inputs = make_inputs(tmp_path / "in", images=1, frames=60)  # a0.png, then a long clip.mp4
    out = tmp_path / "out"
    run = Run(tmp_path / "in", "-o", out, "--weights", tiny_weights, "--background", "green",
              log=tmp_path / "run.log")
    run.wait_until(lambda: any(PARTIAL in p.name for p in out.glob(".*")))  # the video is being written
    run.process.send_signal(signum)
    name = signal.Signals(signum).name
    assert run.wait() == 128 + signum, run.stderr()
    said = run.stderr()
    assert "Traceback" not in said
    last = said.replace("\r", "\n").strip().splitlines()[-1]
    assert last == (f"fastmatte matte: interrupted by {name}; the outputs finished before it are kept, "
                    "the unfinished ones removed")
    assert sorted(p.name for p in out.iterdir()) == ["a0_alpha.png", "a0_composite.png"]  # no temporary files
    check_folder(out, outputs_of(inputs))


@pytest.mark.parametrize("force", [True, False])
def test_two_runs_at_once_leave_one_whole_result(tiny_weights, tmp_path, force):
    """Two runs writing the same out/clip_alpha.mp4 from different videos (sizes and contents; one
    also writes a composite, so their pace differs): the file left is one of the two, whole.
    At this size FFmpeg buffers most of a file until its end, so the writes of two runs rarely
    interleave, and a writer that is not atomic could still pass here: the kills above catch it."""
    frames = 150  # long enough for the two runs to write at the same time
    make_inputs(tmp_path / "a", images=0, frames=frames)
    make_inputs(tmp_path / "b", images=0, frames=frames, size=(48, 80))
    out = tmp_path / "out"
    runs = [Run(tmp_path / "a", "-o", out, "--weights", tiny_weights, "--background", "green",
                *["--force"] * force, log=tmp_path / "a.log"),
            Run(tmp_path / "b", "-o", out, "--weights", tiny_weights, *["--force"] * force,
                log=tmp_path / "b.log")]
    codes = [run.wait() for run in runs]
    said = "\n".join(run.stderr() for run in runs)
    assert "Traceback" not in said
    if force:
        assert codes == [0, 0], said  # the last to finish wins
    else:  # the second finds the first's outputs, when it plans or when it renames, and keeps them
        assert sorted(codes) in ([0, 1], [0, 2]) and "already exist" in said, said
    assert not check_folder(out, {"clip_alpha.mp4", "clip_composite.mp4"}, frames)
    with VideoReader(out / "clip_alpha.mp4") as reader:
        assert reader.size in ((W, H), (80, 48))

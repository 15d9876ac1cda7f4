"""`fastmatte matte`: the alpha (and a composite) of image and video files, into one folder.

Outputs, for an input STEM.EXT: images give STEM_alpha.png (8-bit gray) and, with a background,
STEM_composite.png (RGB); videos give STEM_alpha.mp4 and STEM_composite.mp4 (mp4v, lossy). With
--foreground (models that predict the foreground colour, such as rvm), every input also gives a
folder STEM_foreground/ of RGBA PNG frames, frame_000000.png, frame_000001.png, ... (one for a
photo): the predicted foreground with the alpha in the 4th channel, lossless.
Inputs that share a stem (a.png and a.jpg) are told apart as STEM_EXT_alpha.png and so on.
A recurrent (video) model, such as rvm, carries its state from each frame of a video to the
next; every input starts from a zero state (a photo is a one-frame clip). The composite of a
model that predicts the foreground is made with that foreground, as its authors do.
Folders are taken in name order, leaving out hidden files and the files named as outputs of
another input of the same run (STEM_alpha.png beside STEM.jpg, as -o equal to the input folder
leaves them): those are earlier results, said and left out, and replaced with --force. A file
named on the command line is always an input, and an input is never overwritten.

Before the model is loaded or anything is written, the plan is checked, and the command stops
with exit status 2 and one line saying why when: --background is not a known colour or an
image file (or is empty), an input does not exist, a folder holds no image or video, the output
folder cannot be created or written, two inputs would still give the same output name, an
output would replace an input or the background image (never allowed, not even with --force),
an output's name is taken by a folder (a foreground folder's by a file), a foreground folder
holds anything but its frames, or an output exists already and --force was not given. Once
the model is loaded, and still before anything is written: --foreground with a model that
predicts no foreground (exit status 2).

Every output is whole or absent: it is written to a hidden temporary file beside it
(.NAME.<pid>-<random>.partial.png or .mp4; a foreground folder to a hidden temporary folder,
.NAME.<pid>-<random>.partial) and renamed into place once complete (a video after its index is
written; an earlier foreground folder is moved aside first, then deleted). A killed run leaves
no file that looks finished, and runs writing the same outputs at once leave one complete
result (the last to finish wins), never a mixture.
Ctrl-C (SIGINT) or SIGTERM stops a run cleanly: the outputs finished before it are kept, the
unfinished ones removed, one line says so, and the exit status is 130 or 143. Only a run killed
outright (SIGKILL) can leave a temporary file; later runs ignore it and it is safe to delete.

Instance models (e2ehim, any model whose class says instances = True) give, for each photo
STEM, STEM_instance1_alpha.png, STEM_instance2_alpha.png, ... (8-bit alpha, one per instance
found, in the model's order; none when it finds no one) and STEM_instances.png, an overview:
the photo tinted by each instance's alpha in a fixed palette colour, instance 1 red, 2 green,
3 blue, 4 yellow, 5 magenta, 6 cyan, 7 orange, 8 purple, then again from red
(pixel = (1 - 0.6 a) pixel + 0.6 a colour, instance after instance). With --background,
STEM_composite.png composites with the union matte (the per-pixel max over the instances).
Instances are not tracked across frames: a video input is refused (exit status 2), and so is
--foreground. The number of instances is known only after matting, so an existing
STEM_instance<k>_alpha.png of an input is refused without --force like any output; with
--force, the new files replace the old ones and those numbered beyond the new count are deleted
after the photo's new files are written (never an input: that is refused before anything).

While matting, an input that cannot be decoded is reported and skipped and the others go on;
a video that ends before the frame count its container claims keeps the frames that could be
decoded in its outputs. Both are listed at the end, with exit status 1.
"""
import argparse
import contextlib
import os
import re
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import cv2
import numpy as np

from fastmatte.cli import usage_error
from fastmatte.io import MATTE_SUFFIXES, UnreadableImage, read_image, write_image
from fastmatte.io.atomic import check_output_folder
from fastmatte.io.video import (VIDEO_SUFFIXES, PngSequenceWriter, UnreadableVideo, VideoEndedEarly,
                                VideoReader, VideoWriter, foreign_files)

COLOURS = {"black": (0, 0, 0), "white": (255, 255, 255), "green": (0, 255, 0), "blue": (0, 0, 255),
           "red": (255, 0, 0), "gray": (128, 128, 128), "grey": (128, 128, 128), "yellow": (255, 255, 0),
           "cyan": (0, 255, 255), "magenta": (255, 0, 255)}
DEFAULT_FPS = 25.0  # for a video whose container gives no frame rate
KINDS = ("alpha", "composite", "foreground", "instances")  # the outputs of an input, as they are named
# The overview's colours (STEM_instances.png), for instance 1, 2, ...; then again from the first.
PALETTE = (("red", (230, 25, 75)), ("green", (60, 180, 75)), ("blue", (0, 130, 200)),
           ("yellow", (255, 225, 25)), ("magenta", (240, 50, 230)), ("cyan", (70, 240, 240)),
           ("orange", (245, 130, 48)), ("purple", (145, 30, 180)))
TINT = 0.6  # the overview's pixel = (1 - TINT a) pixel + TINT a colour, instance after instance
_INSTANCE_FILE = re.compile(r"(.+)_instance([1-9][0-9]*)_alpha\.png")


class PlanError(ValueError):
    """The command line asks for something that would fail or destroy a file; nothing was written."""


@dataclass
class Job:
    """One input file and the files made from it: outputs["alpha"], and maybe outputs["composite"]
    and outputs["foreground"] (a folder of PNG frames); for an instance model, outputs["instances"]
    (the overview) instead of outputs["alpha"], and instance_base: the instance mattes are
    f"{instance_base}_instance{k}_alpha.png"."""
    source: Path
    is_video: bool
    outputs: dict
    instance_base: Optional[Path] = None

    def instance_file(self, k: int) -> Path:
        return self.instance_base.with_name(f"{self.instance_base.name}_instance{k}_alpha.png")

    def earlier_instance_files(self) -> dict:
        """{k: path} of the STEM_instance<k>_alpha.png files in the output folder now."""
        folder, found = self.instance_base.parent, {}
        if folder.is_dir():
            for path in folder.iterdir():
                match = _INSTANCE_FILE.fullmatch(path.name)
                if match and match.group(1) == self.instance_base.name:
                    found[int(match.group(2))] = path
        return found


def plan(inputs, out_dir, composite: bool, force: bool, protected=(),
         foreground: bool = False, instances: bool = False) -> tuple[list[Job], list[Path]]:
    """(the jobs for `inputs`, the files left out of the folders as earlier outputs), or
    PlanError saying what is wrong.

    inputs: files, or folders whose images and videos are taken in name order, leaving out
    hidden files (the temporary files of an interrupted run among them) and files named as the
    outputs of another input of the run (see _earlier_outputs); the same file named twice is done
    once. A file named on the command line is always an input. out_dir must be a folder that
    exists or can be created, and writable. protected: more files no output may replace (the
    background image). composite, foreground: whether the jobs have those outputs. instances: for
    an instance model (the overview and instance mattes instead of the alpha; videos refused)."""
    out_dir = Path(out_dir)
    try:
        check_output_folder(out_dir)
    except OSError as error:
        raise PlanError(str(error)) from error
    named = []  # (path, whether a folder scan found it), in the order given
    for given in map(Path, inputs):
        if given.is_dir():
            files = sorted(p for p in given.iterdir() if p.is_file() and not p.name.startswith(".")
                           and p.suffix.lower() in MATTE_SUFFIXES + VIDEO_SUFFIXES)
            if not files:
                raise PlanError(f"{given}: the folder holds no image ({', '.join(MATTE_SUFFIXES)}) or video "
                                f"({', '.join(VIDEO_SUFFIXES)})")
            named += [(p, True) for p in files]
        elif given.is_file():
            named.append((given, False))
        else:
            raise PlanError(f"{given}: no such file or folder")
    explicit = {p.resolve() for p, scanned in named if not scanned}
    found = [p for p, scanned in named if scanned and p.resolve() not in explicit]
    skipped = _earlier_outputs(found, [p for p, _ in named])
    sources = {}
    for path, _ in named:
        if path not in skipped:
            sources.setdefault(path.resolve(), path)
    stems = [p.stem for p in sources.values()]
    if instances:
        videos = [p for p in sources.values() if _is_video(p)]
        if videos:
            raise PlanError(f"{_some(videos)}: video input(s) with an instance model; instances are not "
                            "tracked across frames, so only photos can be matted (extract the frames first)")
    kinds = [kind for kind, wanted in zip(KINDS, (not instances, composite, foreground, instances)) if wanted]
    jobs = [Job(path, _is_video(path), {kind: out_dir / _output_name(path, stems.count(path.stem) > 1, kind)
                                        for kind in kinds},
                out_dir / _output_name(path, stems.count(path.stem) > 1, "") if instances else None)
            for path in sources.values()]
    _check_outputs(jobs, set(sources) | {Path(p).resolve() for p in protected}, force)
    return jobs, skipped


def _is_video(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_SUFFIXES


def _output_name(source: Path, qualified: bool, kind: str) -> str:
    """STEM_KIND.png (STEM_KIND.mp4 for a video; STEM_foreground, a folder, for the foreground),
    or STEM_EXT_KIND... when qualified, that is, when another input shares the stem."""
    name = f"{source.stem}_{source.suffix.lstrip('.')}" if qualified else source.stem
    if not kind:  # the base of an instance model's STEM_instance<k>_alpha.png
        return name
    if kind == "foreground":
        return f"{name}_{kind}"
    return f"{name}_{kind}{'.mp4' if _is_video(source) else '.png'}"


def _earlier_outputs(found, inputs) -> list[Path]:
    """The files among `found` (taken from folders) named as an output of one of `inputs` (in
    any folder), in either form: fastmatte's results of an earlier run, as -o equal to an input
    folder leaves them next to their inputs, which must neither be matted as photos nor be
    protected as inputs from the run that replaces them."""
    names = {_output_name(source, qualified, kind) for source in inputs for qualified in (False, True)
             for kind in KINDS}
    bases = {_output_name(source, qualified, "") for source in inputs for qualified in (False, True)}
    instance = lambda name: (m := _INSTANCE_FILE.fullmatch(name)) is not None and m.group(1) in bases  # noqa: E731
    return [path for path in found if path.name in names or instance(path.name)]


def _some(paths, shown=3) -> str:
    """The first `shown` of `paths`, and how many more, for one line of a message."""
    more = f" and {len(paths) - shown} more" if len(paths) > shown else ""
    return f"{', '.join(map(str, paths[:shown]))}{more}"


def _check_outputs(jobs, protected, force):
    made_by = {}
    for job in jobs:
        for kind, out in job.outputs.items():
            key = out.resolve()
            if key in made_by:
                raise PlanError(f"{made_by[key]} and {job.source} would both write {out}; rename one, or "
                                "matte them into different folders")
            if key in protected:
                raise PlanError(f"refusing to write {out}: it is one of the inputs")
            if kind == "foreground":
                _check_sequence_folder(out, protected)
            elif out.is_dir():
                raise PlanError(f"refusing to write {out}: a folder of that name is in the way")
            made_by[key] = job.source
    existing = [out for job in jobs for out in job.outputs.values() if os.path.lexists(out)]
    for job in jobs:
        if job.instance_base is None:
            continue
        for out in sorted(job.earlier_instance_files().values()):
            if out.resolve() in protected:
                raise PlanError(f"refusing to write or delete {out}: it is one of the inputs")
            if out.is_dir():
                raise PlanError(f"refusing to write {out}: a folder of that name is in the way")
            existing.append(out)
    if existing and not force:
        raise PlanError(f"{_some(existing)} already exist(s); pass --force to overwrite")


def _check_sequence_folder(folder: Path, protected):
    """A foreground folder that exists may be replaced (with --force) only when it is a folder
    holding nothing but frames, none of them an input: replacing it deletes what it holds."""
    if not os.path.lexists(folder):
        return
    if not folder.is_dir() or folder.is_symlink():
        raise PlanError(f"refusing to write {folder}: a file of that name is in the way (it would be a "
                        "folder of frames)")
    inside = sorted(str(p) for p in protected if p.parent == folder.resolve())
    if inside:
        raise PlanError(f"refusing to replace {folder}: it holds one of the inputs ({inside[0]})")
    foreign = foreign_files(folder)
    if foreign:
        raise PlanError(f"refusing to replace {folder}: it holds files other than frame_NNNNNN.png "
                        f"({_some(foreign)})")


def parse_background(text: str):
    """--background: a colour name (see COLOURS), #RRGGBB or r,g,b (ints 0..255) -> (r, g, b);
    otherwise an image file -> uint8 RGB [H, W, 3]. PlanError when it is none of these."""
    lowered = text.strip().lower()
    if lowered in COLOURS:
        return COLOURS[lowered]
    if lowered.startswith("#") and len(lowered) == 7:
        try:
            return tuple(int(lowered[i:i + 2], 16) for i in (1, 3, 5))
        except ValueError:
            pass
    parts = lowered.split(",")
    if len(parts) == 3 and all(p.strip().isdigit() and int(p) <= 255 for p in parts):
        return tuple(int(p) for p in parts)
    if Path(text).is_file():
        try:
            return read_image(text)
        except UnreadableImage as error:
            raise PlanError(f"--background {error}") from error
    raise PlanError(f"--background must be a colour ({', '.join(COLOURS)}, #RRGGBB or r,g,b with ints "
                    f"0..255) or an image file; got {text!r}")


def fit_background(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """uint8 RGB [height, width, 3]: `image` scaled to cover that size, keeping its aspect
    ratio, and center-cropped."""
    h, w = image.shape[:2]
    scale = max(height / h, width / w)
    size = (max(width, round(w * scale)), max(height, round(h * scale)))
    resized = cv2.resize(image, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    top, left = (size[1] - height) // 2, (size[0] - width) // 2
    return np.ascontiguousarray(resized[top:top + height, left:left + width])


class _Backgrounds:
    """The composite background for each frame size: a colour as is, an image fitted once per size,
    None without a background (no composite)."""

    def __init__(self, background):
        self.background, self.fitted = background, {}

    def __call__(self, height, width):
        if self.background is None or isinstance(self.background, tuple):
            return self.background
        if (height, width) not in self.fitted:
            self.fitted[(height, width)] = fit_background(self.background, height, width)
        return self.fitted[(height, width)]


def matte_image(matter, job: Job, backgrounds, force: bool, bar):
    image = read_image(job.source)
    matter.reset()  # a photo is a clip of its own: a recurrent model starts from a zero state
    result = matter.outputs(image, backgrounds(*image.shape[:2]), "foreground" in job.outputs)
    if result.composite is not None:
        write_image(job.outputs["composite"], result.composite, overwrite=force)
    if result.foreground is not None:
        with PngSequenceWriter(job.outputs["foreground"], overwrite=force) as sequence:
            sequence.write(result.foreground)
    write_image(job.outputs["alpha"], result.alpha, overwrite=force)
    bar.update(1)


def instance_overview(image: np.ndarray, alphas) -> np.ndarray:
    """uint8 RGB [H, W, 3]: `image` tinted by each uint8 [H, W] matte of `alphas` in turn, with
    the PALETTE colour of its number: pixel = (1 - TINT a) pixel + TINT a colour."""
    out = image.astype(np.float32)
    for k, alpha in enumerate(alphas):
        weight = (TINT / 255) * alpha.astype(np.float32)[..., None]
        out = out * (1 - weight) + np.float32(PALETTE[k % len(PALETTE)][1]) * weight
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def matte_instances(matter, job: Job, backgrounds, force: bool, bar) -> tuple[int, int]:
    """An instance model on a photo: its instance mattes, the composite (with the union matte)
    and the overview, then (with force) the earlier instance mattes numbered beyond the new
    count deleted. Returns (files written, files deleted)."""
    image = read_image(job.source)
    result = matter.outputs(image, backgrounds(*image.shape[:2]))
    for k, alpha in enumerate(result.alpha, 1):
        write_image(job.instance_file(k), alpha, overwrite=force)
    if result.composite is not None:
        write_image(job.outputs["composite"], result.composite, overwrite=force)
    write_image(job.outputs["instances"], instance_overview(image, result.alpha), overwrite=force)
    earlier = job.earlier_instance_files() if force else {}
    stale = [path for k, path in sorted(earlier.items()) if k > len(result.alpha)]
    for path in stale:
        os.unlink(path)
    bar.update(1)
    return len(result.alpha) + len(job.outputs), len(stale)


def instance_model(name: str) -> bool:
    """Whether the zoo model `name` is an instance model (its class says instances = True)."""
    from fastmatte.models import MODELS

    entry = MODELS.get(name)
    build = getattr(entry, "build", None)
    owner = build if isinstance(build, type) else getattr(build, "__self__", None)
    return getattr(owner, "instances", False) is True


def matte_video(matter, job: Job, backgrounds, force: bool, bar):
    """Returns a problem line when the video ended early, else None. The outputs appear only when
    the whole video is done; any exception removes them unfinished. A recurrent model starts
    the video from a zero state and carries its state through it."""
    with VideoReader(job.source) as reader, warnings.catch_warnings(), contextlib.ExitStack() as writers:
        warnings.simplefilter("ignore", VideoEndedEarly)  # reported in the problem list instead
        fps = reader.fps or DEFAULT_FPS
        out = {kind: writers.enter_context(PngSequenceWriter(path, overwrite=force) if kind == "foreground"
                                           else VideoWriter(path, fps, reader.size, overwrite=force))
               for kind, path in job.outputs.items()}
        matter.reset()
        for frame in reader:
            result = matter.outputs(frame, backgrounds(*frame.shape[:2]), "foreground" in out)
            out["alpha"].write(result.alpha)
            if result.composite is not None:
                out["composite"].write(result.composite)
            if result.foreground is not None:
                out["foreground"].write(result.foreground)
            bar.update(1)
        if not reader.frames_read:
            raise UnreadableVideo(f"{job.source}: no frame could be decoded")
    if reader.ended_early:
        return (f"{job.source}: only {reader.frames_read} of the {reader.frame_count} frames its container "
                f"claims could be decoded; the outputs hold those {reader.frames_read}")
    return None


def frame_total(jobs) -> int:
    """Frames to matte, for the progress bar: 1 per image, the claimed count per video."""
    total = 0
    for job in jobs:
        if not job.is_video:
            total += 1
            continue
        try:
            with VideoReader(job.source) as reader:
                total += reader.frame_count or 0
        except UnreadableVideo:
            pass  # reported when its turn comes
    return total


def run(args) -> int:
    """The `fastmatte matte` command on parsed arguments; the exit status (SIGINT and SIGTERM are
    handled by fastmatte.cli.main: unfinished outputs removed, finished ones kept)."""
    import torch
    from tqdm import tqdm

    from fastmatte.matter import Matter, RandomWeightsWarning

    instances = instance_model(args.model)
    if instances and args.foreground:
        return usage_error("matte", f"--foreground: {args.model!r} is an instance model; it predicts no "
                                    "foreground")
    try:
        background = None if args.background is None else parse_background(args.background)
        protected = [args.background] if isinstance(background, np.ndarray) else []
        jobs, skipped = plan(args.inputs, args.out_dir, background is not None, args.force, protected,
                             args.foreground, instances)
        device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
        if skipped:
            print(f"fastmatte matte: left out {len(skipped)} file(s) named as the outputs of other inputs "
                  f"(earlier results, not photos): {_some(skipped)}", file=sys.stderr)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RandomWeightsWarning)  # said below, without a source line
            matter = Matter(args.model, weights=args.weights, device=device, precision=args.precision)
        if matter.instances and not instances:  # its build is no class: known only now; nothing written yet
            if args.foreground:
                raise PlanError(f"--foreground: {args.model!r} is an instance model; it predicts no "
                                "foreground")
            jobs, skipped = plan(args.inputs, args.out_dir, background is not None, args.force, protected,
                                 args.foreground, True)
    except ValueError as error:  # PlanError, WeightsError, and Matter's argument checks
        return usage_error("matte", str(error))
    if args.foreground and not matter.predicts_foreground:
        return usage_error("matte", f"--foreground: model {args.model!r} predicts no foreground (recurrent "
                                    "models such as rvm do)")
    if matter.random_weights:
        print(f"fastmatte matte: no --weights given, so the {args.model!r} model has random weights: these "
              "mattes are meaningless (the speed is not)", file=sys.stderr)
    try:
        Path(args.out_dir).mkdir(parents=True, exist_ok=True)
    except OSError as error:  # checked in plan(); something changed since
        return usage_error("matte", f"cannot create the output folder {args.out_dir}: "
                                    f"{error.strerror or error}")
    backgrounds = _Backgrounds(background)
    problems, written, deleted = [], 0, 0
    with tqdm(total=frame_total(jobs), desc="fastmatte matte", unit="frame", file=sys.stderr) as bar:
        for job in jobs:
            try:
                if job.instance_base is not None:
                    made, gone = matte_instances(matter, job, backgrounds, args.force, bar)
                    written, deleted = written + made, deleted + gone
                    continue
                if job.is_video:
                    problem = matte_video(matter, job, backgrounds, args.force, bar)
                    if problem:
                        problems.append(problem)
                else:
                    matte_image(matter, job, backgrounds, args.force, bar)
                written += len(job.outputs)
            except (OSError, ValueError) as error:  # unreadable input, unwritable output, odd frame
                problems.append(str(error) if str(job.source) in str(error) else f"{job.source}: {error}")
    print(f"wrote {written} file(s) to {args.out_dir}; {len(jobs) - len(problems)} of {len(jobs)} input(s) "
          "without problems")
    if deleted:
        print(f"deleted {deleted} earlier instance matte(s) numbered beyond the new instance counts")
    if problems:
        print(f"{len(problems)} problem(s):", file=sys.stderr)
        for line in problems:
            print(f"  {line}", file=sys.stderr)
        return 1
    return 0


def add_parser(sub):
    m = sub.add_parser("matte", help="alpha mattes (and composites) of image and video files",
                       description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    m.add_argument("inputs", nargs="+", metavar="INPUT", help="image or video files, or folders of them")
    m.add_argument("-o", "--out-dir", required=True, help="where the outputs go (created if missing)")
    m.add_argument("--model", default="cra",
                   help="model name (default cra); an instance model such as e2ehim writes "
                        "STEM_instance<k>_alpha.png per instance and a STEM_instances.png overview (instance "
                        "1 red, 2 green, 3 blue, 4 yellow, 5 magenta, 6 cyan, 7 orange, 8 purple, repeating)")
    m.add_argument("--weights", help="a local checkpoint in any format fastmatte reads (safetensors, "
                                     "PyTorch, .pdparams, ONNX); without it, the weights `fastmatte "
                                     "weights get MODEL` fetched for models that have them, else random")
    m.add_argument("--device", choices=["cpu", "cuda"], help="default: cuda if present, else cpu")
    m.add_argument("--precision", choices=["fp32", "fp16", "bf16"], default="fp32",
                   help="fp16/bf16: CUDA only (default fp32)")
    m.add_argument("--background", metavar="COLOR|IMAGE",
                   help="also write composites over a colour (green, white, #RRGGBB, r,g,b) or an image file")
    m.add_argument("--foreground", action="store_true",
                   help="also write the predicted foreground of each input as RGBA PNG frames in "
                        "STEM_foreground/ (models that predict it, such as rvm)")
    m.add_argument("--force", action="store_true", help="overwrite existing outputs (inputs never)")
    m.set_defaults(run=run)

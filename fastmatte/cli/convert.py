"""`fastmatte convert NAME IN OUT.safetensors`: an official checkpoint (any format fastmatte
reads) converted once into fastmatte's own format, so that later loads are plain safetensors.

The output holds the model's state dict in fastmatte's names, and as metadata the model name
and its configuration (the one the file implies plus --set), so that load_model(NAME,
weights=OUT) and Matter(NAME, weights=OUT) rebuild the same model without repeating them. The
model is built and loaded strictly first, so a file that does not fit is refused before
anything is written. OUT is written to a temporary file and renamed: it is whole or absent.
"""
import ast
import json
import sys
from pathlib import Path

from fastmatte.cli import usage_error
from fastmatte.io.atomic import output_file_problem


def add_parser(sub):
    c = sub.add_parser("convert", help="convert an official checkpoint into fastmatte's safetensors",
                       description=__doc__)
    c.add_argument("model", metavar="NAME", help="the model, e.g. cra (see fastmatte info)")
    c.add_argument("source", metavar="IN",
                   help="the checkpoint: .safetensors, .pth/.pt/.ckpt, .pdparams or .onnx")
    c.add_argument("out", metavar="OUT", help="the .safetensors file to write")
    c.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="a build argument of the model (repeatable); VALUE is a Python literal "
                        "(4, 0.1, (2, 2), 'hrnet_w48') or else taken as a string")
    c.add_argument("--force", action="store_true", help="replace OUT if it exists (never IN)")
    c.set_defaults(run=run)


def run(args) -> int:
    from fastmatte.models import MODELS, build_model, read_weights
    from fastmatte.models.weights import load_state_dict

    out, source = Path(args.out), Path(args.source)
    if args.model not in MODELS:
        return usage_error("convert", f"unknown model {args.model!r}; the models are {', '.join(MODELS)}")
    if out.suffix != ".safetensors":
        return usage_error("convert", f"OUT must be a .safetensors file, got {out}")
    if out.exists() and source.exists() and out.resolve() == source.resolve():
        return usage_error("convert", f"refusing to write {out}: it is the input")
    problem = output_file_problem(out, args.force)
    if problem:
        return usage_error("convert", problem)
    try:
        config = parse_settings(args.set)
        conversion = read_weights(args.model, source)
        config = {**conversion.config, **config}
        model = build_model(args.model, **config)
        load_state_dict(model, conversion.state_dict, f"{source} ({conversion.layout})")
        metadata = {"fastmatte.model": args.model, "fastmatte.config": json.dumps(config),
                    "fastmatte.source": source.name, "fastmatte.layout": conversion.layout}
        written = write_safetensors(model.state_dict(), out, metadata)
    except (ValueError, OSError) as error:  # WeightsError, a bad --set, an unwritable OUT
        print(f"fastmatte convert: {error}", file=sys.stderr)
        return 2
    dropped = f"; dropped {len(conversion.dropped)} tensors the official loader drops too" \
        if conversion.dropped else ""
    print(f"read {source}: {conversion.layout}, {len(conversion.state_dict)} tensors{dropped}")
    print(f"wrote {out}: {written} tensors of {args.model} "
          f"({', '.join(f'{k}={v!r}' for k, v in config.items()) or 'default configuration'})")
    return 0


def parse_settings(settings) -> dict:
    """["k=v", ...] -> {k: literal v}; ValueError naming a setting without "=" or a key given twice."""
    config = {}
    for setting in settings:
        key, equals, text = setting.partition("=")
        if not equals or not key.isidentifier():
            raise ValueError(f"--set takes KEY=VALUE with KEY a build argument name, got {setting!r}")
        if key in config:
            raise ValueError(f"--set {key} given twice")
        try:
            config[key] = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            config[key] = text
    return config


def write_safetensors(state: dict, out: Path, metadata: dict) -> int:
    """Write `state` to `out` atomically (whole or absent); the number of tensors written."""
    from safetensors.torch import save_file

    from fastmatte.io.atomic import atomic_path

    tensors = {name: tensor.detach().contiguous().clone() for name, tensor in state.items()}
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as temporary:
        save_file(tensors, str(temporary), metadata=metadata)
    return len(tensors)

"""`fastmatte info`: version, torch, the backends present here, the GPU, and the model zoo (each
model's configurations and the checkpoint formats it reads)."""


def add_parser(sub):
    sub.add_parser("info", help="version, torch, backends present, GPU, the models").set_defaults(run=run)


def run(args) -> int:
    import fastmatte

    for key, value in fastmatte.info().items():
        if key == "models":
            continue
        if isinstance(value, dict):
            value = ", ".join(f"{k}={'yes' if v else 'no'}" for k, v in value.items())
        elif isinstance(value, list):
            value = ", ".join(value) or "none"
        print(f"{key:16s} {value}")
    print(format_models())
    return 0


def format_models() -> str:
    """The zoo as text: per model its summary, named configurations (their build arguments) and
    the checkpoint formats it loads."""
    from fastmatte.models import MODELS

    lines = ["models (fastmatte.models.build_model / load_model, fastmatte convert):"]
    for name, entry in MODELS.items():
        lines.append(f"  {name:14s} {entry.summary}")
        for configuration, arguments in entry.configurations.items():
            shown = ", ".join(f"{k}={v!r}" for k, v in arguments.items()) or "the defaults"
            lines.append(f"  {'':14s}   configuration {configuration}: {shown}")
        lines.append(f"  {'':14s}   reads: {'; '.join(entry.formats)}")
    return "\n".join(lines)

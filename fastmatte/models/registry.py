"""The model zoo's registry: names to builders with named configurations, and the two calls every
model has, build_model (random weights) and load_model (a checkpoint in any format fastmatte reads,
converted by the model's own convert_official, then loaded strictly)."""
import inspect
import json
from dataclasses import dataclass, field
from typing import Callable, Mapping, NamedTuple, Optional

import torch
from torch import nn

from fastmatte.models.weights import WeightsError, load_state_dict, read_metadata, read_state_dict

METADATA_MODEL = "fastmatte.model"  # safetensors metadata written by `fastmatte convert`
METADATA_CONFIG = "fastmatte.config"  # the builder arguments, as JSON


class Conversion(NamedTuple):
    """What a model's convert_official made of a checkpoint (timm's checkpoint_filter_fn pattern).

    state_dict: the tensors in fastmatte's names, ready for a strict load.
    layout: which layout was recognized, in words (e.g. "ZHKKKe MODNet, DataParallel").
    dropped: names left out on purpose because the official loader drops them too.
    config: builder arguments the file implies (e.g. which family of a model it holds); the
      caller's own arguments override them.
    """
    state_dict: dict
    layout: str
    dropped: tuple = ()
    config: Mapping = {}


@dataclass(frozen=True)
class ModelEntry:
    """A model of the zoo. build(**config) makes it with random weights; convert_official(state
    dict) -> Conversion reads its released checkpoints; configurations names the useful sets of
    build arguments ({} is the default); formats says which files its releases come as.
    default_weights, for a model whose real weights fastmatte can fetch as an install step: a
    callable giving the path of the fetched file, or raising WeightsError that names the one
    command that fetches it; load_model and Matter use it when no weights are given.
    check_own_file, for a model whose architecture changed: called with the tensors and the
    configuration of a file `fastmatte convert` wrote for it, raises WeightsError for one of an
    earlier, incompatible version (such files skip convert_official)."""
    build: Callable[..., nn.Module]
    convert_official: Callable[[dict], Conversion]
    summary: str
    configurations: Mapping[str, Mapping] = field(default_factory=dict)
    formats: tuple = ()
    default_weights: Optional[Callable[[], object]] = None
    check_own_file: Optional[Callable[[dict, Mapping], None]] = None


MODELS: dict = {}
"""Model names (as the command line takes them) to their ModelEntry; filled by fastmatte.models."""


def build_model(name: str, **config) -> nn.Module:
    """A new model `name` with random weights: MODELS[name].build(**config)."""
    entry = _entry(name)
    try:
        return entry.build(**config)
    except TypeError as error:  # an argument the builder does not take
        accepted = ", ".join(p for p in inspect.signature(entry.build).parameters if p not in ("self", "cls"))
        raise ValueError(f"model {name!r} cannot be built with {_arguments(config)} ({error}); its "
                         f"arguments are: {accepted}") from error


def read_weights(name: str, weights) -> Conversion:
    """The checkpoint file `weights` read (any format of fastmatte.models.read_state_dict) and
    converted to model `name`'s names. A file written by `fastmatte convert` carries its model
    name and configuration: another model's file is refused, and its configuration is
    Conversion.config. Raises WeightsError naming the file when it is not `name`'s."""
    entry = _entry(name)
    state = read_state_dict(weights)
    metadata = read_metadata(weights)
    if METADATA_MODEL in metadata:
        if metadata[METADATA_MODEL] != name:
            raise WeightsError(f"{weights} holds fastmatte weights of model {metadata[METADATA_MODEL]!r}, "
                               f"not {name!r}")
        config = _tuples(json.loads(metadata.get(METADATA_CONFIG, "{}")))
        if entry.check_own_file is not None:
            try:
                entry.check_own_file(state, config)
            except WeightsError as error:
                raise WeightsError(f"{weights}: {error}") from error
        return Conversion(state, f"fastmatte {name}", (), config)
    try:
        conversion = entry.convert_official(state)
    except WeightsError as error:  # converters see tensors, not files: name the file here
        raise WeightsError(f"{weights}: {error}") from error
    if not isinstance(conversion, Conversion):  # a model's converter written wrongly: say so early
        raise TypeError(f"MODELS[{name!r}].convert_official returned {type(conversion).__name__}, "
                        "not a Conversion")
    return conversion


def load_model(name: str, weights=None, **config) -> nn.Module:
    """Model `name` built with the configuration the weights file implies, overridden by
    `config`, holding the weights of the file `weights` (strictly: every tensor present, of the
    right shape and kind, nothing left over). Raises WeightsError naming the file and the
    mismatched names otherwise. weights=None takes the model's fetched release
    (ModelEntry.default_weights; WeightsError naming the command that fetches it when it is not
    there yet), and is an error for a model without one. The model is returned in training
    mode, like a new nn.Module."""
    if weights is None:
        weights = default_weights(name)
    conversion = read_weights(name, weights)
    model = build_model(name, **{**conversion.config, **config})
    _check_is_this_model(name, model, conversion, weights)
    load_state_dict(model, conversion.state_dict, f"{weights} ({conversion.layout})")
    return model


def default_weights(name: str):
    """The path of model `name`'s fetched release (see ModelEntry.default_weights)."""
    entry = _entry(name)
    if entry.default_weights is None:
        raise WeightsError(f"model {name!r} has no weights fastmatte can fetch: pass weights=PATH (a "
                           f"checkpoint you have), or build it with random weights (build_model)")
    return entry.default_weights()


def _check_is_this_model(name, model, conversion, weights):
    """A file that holds under half the tensors the model needs is another model's checkpoint,
    not a damaged one of this model: say so (naming the zoo model it fits, if any) rather than
    list a hundred missing names."""
    own, theirs = set(model.state_dict()), list(conversion.state_dict)
    shared = len(own & set(theirs))
    if shared * 2 >= len(own):
        return
    other = _model_that_fits(conversion.state_dict, exclude=name)
    hint = f"; it looks like a {other!r} checkpoint: load it as load_model({other!r}, ...)" if other else ""
    raise WeightsError(f"{weights} is not a {name!r} checkpoint: only {shared} of the {len(own)} tensors "
                       f"{type(model).__name__} needs are in it ({conversion.layout}; it holds names "
                       f"such as {', '.join(theirs[:3])}){hint}")


def _model_that_fits(state, exclude):
    """The name of another zoo model whose converter takes `state` and which then finds at least
    90% of its tensors in it, or None. Models are built on the meta device: no memory, no init."""
    for other, entry in MODELS.items():
        if other == exclude:
            continue
        try:
            conversion = entry.convert_official(state)
            with torch.device("meta"):
                needed = {k for k in entry.build(**conversion.config).state_dict()
                          if not k.endswith("num_batches_tracked")}  # files may lack it (load_state_dict)
        except Exception:  # another model's converter or builder refusing this file is the answer "no"
            continue
        if needed and len(needed & set(conversion.state_dict)) >= 0.9 * len(needed):
            return other
    return None


def _entry(name) -> ModelEntry:
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; the models are {', '.join(MODELS)}")
    return MODELS[name]


def _arguments(config) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in config.items()) or "no arguments"


def _tuples(value):
    """JSON's lists back to the tuples the builders were given."""
    if isinstance(value, list):
        return tuple(_tuples(v) for v in value)
    if isinstance(value, dict):
        return {k: _tuples(v) for k, v in value.items()}
    return value

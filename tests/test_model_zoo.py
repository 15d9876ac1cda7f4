"""The zoo's registry and its two calls (build_model, load_model), `fastmatte convert` and
`fastmatte info`, checked on CRAMatting's tiny configuration: loaded models are compared
tensor by tensor, and by output, with the model the file was written from."""
import json
import os
import warnings
from dataclasses import replace

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from fastmatte import Matter
from fastmatte.cli import main
from fastmatte.matter import RandomWeightsWarning
from fastmatte.models import (MODELS, Conversion, CRAMatting, ModelEntry, WeightsError, build_model,
                              load_model, read_weights)

TINY_CRA = MODELS["cra"].configurations["tiny"]

TINY_SETTINGS = [f"--set={key}={value!r}" for key, value in TINY_CRA.items()]


def trained_tiny(seed=1):
    """A tiny CRAMatting whose weights differ from any fresh one (as a trained model's would)."""
    torch.manual_seed(seed)
    model = CRAMatting.tiny()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.05)
    return model


def assert_same_weights(model, reference):
    mine, theirs = model.state_dict(), reference.state_dict()
    assert list(mine) == list(theirs)
    for name in theirs:
        assert torch.equal(mine[name], theirs[name]), name


def assert_same_alpha(model, reference):
    image = torch.rand(1, 3, 40, 56, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        torch.testing.assert_close(model.eval().predict(image), reference.eval().predict(image),
                                   atol=0, rtol=0)


def test_registry_entries_build_their_named_configurations():
    entry = MODELS["cra"]
    assert entry.build is CRAMatting and entry.configurations["official"] == {}
    for configuration in entry.configurations.values():
        assert isinstance(build_model("cra", **configuration), CRAMatting)
    assert sum(p.numel() for p in build_model("cra", **entry.configurations["tiny"]).parameters()) < 10 ** 6
    assert entry.formats and entry.summary


def test_build_model_errors_name_the_model_and_the_argument():
    with pytest.raises(ValueError, match="unknown model 'nope'; the models are cra"):
        build_model("nope")
    with pytest.raises(ValueError, match=r"model 'cra' cannot be built with colour=3 .*embed_dim"):
        build_model("cra", colour=3)
    with pytest.raises(ValueError, match="unknown model"):
        load_model("nope", weights="x.safetensors")


def test_predict_is_the_alpha_of_forward():
    model = trained_tiny().eval()
    image = torch.rand(2, 3, 128, 256)  # CRA's predict resizes to multiples of 128: none here
    with torch.no_grad():
        assert torch.equal(model.predict(image), model(image)["alpha"])
        assert torch.equal(model.predict(image, backend="torch"), model(image, backend="torch")["alpha"])
    assert model.predict(image[..., :33, :47]).shape == (2, 1, 33, 47)


@pytest.mark.parametrize("layout", ["safetensors", "torch", "dataparallel trainer"])
def test_load_model_reads_every_layout_to_the_same_model(tmp_path, layout):
    trained = trained_tiny()
    state = {k: v.contiguous() for k, v in trained.state_dict().items()}
    if layout == "safetensors":
        path = tmp_path / "w.safetensors"
        save_file(state, path)
    elif layout == "torch":
        path = tmp_path / "w.pth"
        torch.save(state, path)
    else:
        path = tmp_path / "w.ckpt"
        torch.save({"epoch": 7, "state_dict": {f"module.{k}": v for k, v in state.items()},
                    "optimizer": {"lr": 0.1}}, path)
    model = load_model("cra", weights=path, **TINY_CRA)
    assert isinstance(model, CRAMatting) and model.training
    assert_same_weights(model, trained)
    assert_same_alpha(model, trained)
    matter = Matter("cra", weights=path, **TINY_CRA)
    rgb = np.random.default_rng(0).integers(0, 256, (40, 56, 3), dtype=np.uint8)
    image = torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255
    with torch.no_grad():
        expected = trained.eval().predict(image)[0, 0].numpy()
    np.testing.assert_allclose(matter(rgb), expected, atol=1e-6, rtol=0)


def test_load_model_is_strict_and_names_what_does_not_fit(tmp_path):
    state = trained_tiny().state_dict()
    missing = dict(state)
    missing.popitem()
    cases = {
        "missing": missing,
        "unexpected": {**state, "extra.weight": torch.zeros(2)},
        "wrong shape": {**state, "rel_pos_bias_table": torch.zeros(3)},
        "kind": {k: (v.long() if k == "encoder.patch_embed.proj.weight" else v) for k, v in state.items()},
    }
    for what, tensors in cases.items():
        path = tmp_path / f"{what.replace(' ', '_')}.safetensors"
        save_file({k: v.contiguous() for k, v in tensors.items()}, path)
        with pytest.raises(WeightsError, match=what) as caught:
            load_model("cra", weights=path, **TINY_CRA)
        assert str(path) in str(caught.value)


def test_convert_round_trip_carries_the_configuration(tmp_path, capsys):
    trained = trained_tiny()
    official = tmp_path / "release.pth"
    torch.save({"model": {f"module.{k}": v for k, v in trained.state_dict().items()}}, official)
    out = tmp_path / "cra_tiny.safetensors"
    assert main(["convert", "cra", str(official), str(out), *TINY_SETTINGS]) == 0
    said = capsys.readouterr().out
    assert f"wrote {out}" in said and "embed_dim=8" in said
    with safe_open(str(out), framework="pt") as handle:
        metadata = handle.metadata()
    assert metadata["fastmatte.model"] == "cra"
    assert json.loads(metadata["fastmatte.config"])["num_heads"] == [1, 1, 2, 2]

    model = load_model("cra", weights=out)  # no configuration repeated: the file carries it
    assert model.encoder.patch_embed.proj.weight.shape[0] == 8
    assert_same_weights(model, trained)
    assert_same_alpha(model, trained)
    assert read_weights("cra", out).config == {**TINY_CRA}
    with warnings.catch_warnings():
        warnings.simplefilter("error", RandomWeightsWarning)
        Matter("cra", weights=out)

    again = tmp_path / "again.safetensors"
    assert main(["convert", "cra", str(out), str(again)]) == 0
    assert_same_weights(load_model("cra", weights=again), trained)
    # a caller's argument overrides the file's configuration where it does not change the weights
    assert load_model("cra", weights=out, tile_capacity=5).tile_capacity == 5
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary files


def test_another_models_fastmatte_file_is_refused(tmp_path):
    path = tmp_path / "modnet.safetensors"
    save_file({k: v.contiguous() for k, v in trained_tiny().state_dict().items()}, path,
              metadata={"fastmatte.model": "modnet", "fastmatte.config": "{}"})
    with pytest.raises(WeightsError, match="holds fastmatte weights of model 'modnet', not 'cra'"):
        load_model("cra", weights=path)


def test_convert_refusals_write_nothing(tmp_path, capsys):
    official = tmp_path / "release.pth"
    torch.save(trained_tiny().state_dict(), official)
    out = tmp_path / "out.safetensors"
    out.write_bytes(b"the user's file")
    refusals = {
        "exists; pass --force": ["convert", "cra", str(official), str(out), *TINY_SETTINGS],
        "must be a .safetensors file": ["convert", "cra", str(official), str(tmp_path / "o.pt"),
                                        *TINY_SETTINGS],
        "unknown model 'nope'": ["convert", "nope", str(official), str(tmp_path / "n.safetensors")],
        "KEY=VALUE": ["convert", "cra", str(official), str(tmp_path / "k.safetensors"), "--set", "=3"],
        "cannot be built with": ["convert", "cra", str(official), str(tmp_path / "b.safetensors"),
                                 "--set", "colour=3"],
        "does not fit CRAMatting": ["convert", "cra", str(official), str(tmp_path / "f.safetensors")],
        "does not exist": ["convert", "cra", str(tmp_path / "none.pth"), str(tmp_path / "d.safetensors")],
    }
    for message, argv in refusals.items():
        assert main(argv) == 2, message
        assert message in capsys.readouterr().err, message
    same = tmp_path / "same.safetensors"
    save_file({"a": torch.zeros(1)}, same)
    assert main(["convert", "cra", str(same), str(same), "--force"]) == 2
    assert "it is the input" in capsys.readouterr().err
    assert out.read_bytes() == b"the user's file"
    kept = ["out.safetensors", "release.pth", "same.safetensors"]
    assert sorted(p.name for p in tmp_path.iterdir()) == kept
    assert main(["convert", "cra", str(official), str(out), "--force", *TINY_SETTINGS]) == 0
    assert_same_weights(load_model("cra", weights=out), load_model("cra", weights=official, **TINY_CRA))


def test_a_failed_write_leaves_no_output(tmp_path, monkeypatch, capsys):
    import safetensors.torch

    official = tmp_path / "release.pth"
    torch.save(trained_tiny().state_dict(), official)

    def interrupted(tensors, filename, metadata=None):
        with open(filename, "wb") as half:
            half.write(b"\0" * 100)
        raise OSError("disk full")

    monkeypatch.setattr(safetensors.torch, "save_file", interrupted)
    out = tmp_path / "out.safetensors"
    assert main(["convert", "cra", str(official), str(out), *TINY_SETTINGS]) == 2
    assert "disk full" in capsys.readouterr().err
    assert sorted(os.listdir(tmp_path)) == ["release.pth"]


def test_info_lists_the_models_configurations_and_formats(capsys):
    assert main(["info"]) == 0
    said = capsys.readouterr().out
    assert "cra" in said and "configuration tiny: embed_dim=8" in said and "safetensors" in said
    import fastmatte

    assert fastmatte.info()["models"] == list(MODELS)


def test_conversion_defaults():
    conversion = Conversion({"a": torch.zeros(1)}, "layout")
    assert conversion.dropped == () and dict(conversion.config) == {}



def test_another_models_checkpoint_is_named_as_such(tmp_path, monkeypatch):
    class Toy(torch.nn.Module):
        def __init__(self, width=4):
            super().__init__()
            self.head = torch.nn.Linear(width, 1)

    toy = ModelEntry(Toy, lambda state: Conversion(dict(state), "toy state dict"), "a toy")
    monkeypatch.setitem(MODELS, "toy", toy)
    path = tmp_path / "toy.pth"
    torch.save(Toy().state_dict(), path)
    with pytest.raises(WeightsError, match=r"is not a 'cra' checkpoint: only 0 of the \d+ tensors CRAMatting "
                                           r"needs .*head.weight.*looks like a 'toy' checkpoint"):
        load_model("cra", weights=path, **TINY_CRA)
    assert isinstance(load_model("toy", weights=path), Toy)
    monkeypatch.delitem(MODELS, "toy")
    with pytest.raises(WeightsError, match="is not a 'cra' checkpoint") as caught:
        load_model("cra", weights=path, **TINY_CRA)
    assert "looks like" not in str(caught.value)


def test_weights_that_are_not_finite_are_refused(tmp_path):
    state = {k: v.clone() for k, v in trained_tiny().state_dict().items()}
    bad = "rel_pos_bias_table"
    state[bad][0, 0] = float("nan")
    path = tmp_path / "nan.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, path)
    with pytest.raises(WeightsError, match=f"NaN or infinite values: {bad}. Weights must be finite"):
        load_model("cra", weights=path, **TINY_CRA)


def test_a_model_with_fetched_weights_loads_them_when_none_are_given(tmp_path, monkeypatch):
    trained = trained_tiny()
    path = tmp_path / "fetched.safetensors"
    save_file({k: v.contiguous() for k, v in trained.state_dict().items()}, path,
              metadata={"fastmatte.model": "cra", "fastmatte.config": json.dumps(TINY_CRA)})
    monkeypatch.setitem(MODELS, "cra", replace(MODELS["cra"], default_weights=lambda: path))
    assert_same_weights(load_model("cra"), trained)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RandomWeightsWarning)
        assert not Matter("cra").random_weights

    def not_fetched():
        raise WeightsError("the weights of 'cra' are not fetched yet: run fastmatte weights get cra")

    monkeypatch.setitem(MODELS, "cra", replace(MODELS["cra"], default_weights=not_fetched))
    for make in (lambda: load_model("cra"), lambda: Matter("cra")):
        with pytest.raises(WeightsError, match="run fastmatte weights get cra"):
            make()
    monkeypatch.setitem(MODELS, "cra", replace(MODELS["cra"], default_weights=None))
    with pytest.raises(WeightsError, match="has no weights fastmatte can fetch"):
        load_model("cra")

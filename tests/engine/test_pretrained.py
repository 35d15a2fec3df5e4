"""save_pretrained / from_pretrained round trip, bare networks, pickled .pth behind trust_pickle."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

import lowlabel.methods
from lowlabel.errors import UserError
from lowlabel.pretrained import from_pretrained, load_weights, save_pretrained
from tests.engine.helpers import toy_config
from tests.toy_method import build, make_data


@pytest.fixture(autouse=True)
def toy(monkeypatch):
    monkeypatch.setitem(lowlabel.methods.METHODS, "toy", "tests.toy_method")


def perturbed_method(cfg=None):
    torch.manual_seed(0)
    method = build(cfg or toy_config())
    with torch.no_grad():
        for p in method.networks()["model"].parameters():
            p.add_(torch.randn_like(p))
    return method


def test_round_trip_rebuilds_the_same_function(tmp_path):
    method = perturbed_method(toy_config(data={"hidden": 5}))
    save_pretrained(method, tmp_path / "pre")
    meta = json.loads((tmp_path / "pre" / "config.json").read_text())
    assert meta["method"] == "toy" and meta["config"]["data"]["hidden"] == 5 and meta["networks"] == ["model"]
    keys = set(load_file(str(tmp_path / "pre" / "model.safetensors")))
    assert keys == {f"model/{k}" for k in method.networks()["model"].state_dict()}
    loaded = from_pretrained(tmp_path / "pre", method_name="toy")
    assert loaded.method.config.data.hidden == 5
    x, _ = make_data(loaded.method.config.data, 4, 9)
    with torch.no_grad():
        torch.testing.assert_close(loaded.nets["model"](x), method.networks()["model"].eval()(x), rtol=0, atol=0)


def test_wrong_method_and_bare_networks(tmp_path):
    save_pretrained(perturbed_method(), tmp_path / "pre")
    with pytest.raises(UserError, match="weights of method 'toy', not 'other'"):
        from_pretrained(tmp_path / "pre", method_name="other")
    method = perturbed_method()
    save_pretrained({"model": method.networks()["model"]}, tmp_path / "bare")
    with pytest.raises(UserError, match="bare networks"):
        from_pretrained(tmp_path / "bare")
    loaded = from_pretrained(tmp_path / "bare", method_name="toy", config=toy_config())
    for key, value in method.networks()["model"].state_dict().items():
        assert torch.equal(loaded.nets["model"].state_dict()[key], value)


def test_pth_needs_trust_pickle(tmp_path):
    method = perturbed_method()
    state = {f"module.{k}": v for k, v in method.networks()["model"].state_dict().items()}
    torch.save({"state_dict": state, "epoch": 3, "path": tmp_path}, tmp_path / "authors.pth")  # PosixPath: pickled
    with pytest.raises(UserError, match="trust-pickle"):
        load_weights(tmp_path / "authors.pth")
    weights = load_weights(tmp_path / "authors.pth", trust_pickle=True)[""]
    assert set(weights) == set(method.networks()["model"].state_dict())
    torch.save(state, tmp_path / "plain.pth")  # tensors only: loads without trust
    assert set(load_weights(tmp_path / "plain.pth")[""]) == set(weights)

"""Search spaces: every bad input is a ConfigError naming the parameter, the value and the fix;
the built-in spaces are valid; the grid sampler refuses continuous ranges; the CLI refuses a
bad space file with one line (exit 2) and writes nothing."""
from __future__ import annotations

from pathlib import Path

import pytest

from biasvar import ExperimentConfig
from biasvar.errors import ConfigError
from biasvar.tune import SPACES, load_space
from tests.conftest import run_cli_here

pytestmark = pytest.mark.timeout(120)

CFG = ExperimentConfig(dataset="digits", model="mlp", width=16, epochs=2)

BAD = [
    # (space, words the message must hold: the field and the fix)
    ({"widht": {"type": "int", "low": 8, "high": 32}}, ["widht", "Did you mean 'width'"]),
    ({"lr": {"type": "float", "low": 0.1, "high": 0.01}}, ["lr", "inverted", "swap"]),
    ({"lr": {"type": "float", "low": 0.01, "high": 0.01}}, ["lr", "empty", "widen"]),
    ({"lr": {"type": "float", "low": 0.0, "high": 0.1, "log": True}},
     ["lr", "log scale needs low > 0", "raise low"]),
    ({"weight_decay": {"type": "float", "low": -1.0, "high": 0.1, "log": True}},
     ["weight_decay", "low > 0"]),
    ({"augment": {"type": "categorical", "choices": []}}, ["augment", "non-empty list"]),
    ({"augment": {"type": "categorical"}}, ["augment", "choices"]),
    ({"dropout": {"type": "float", "low": 0.0, "high": 0.5, "step": 0.3}},
     ["dropout.step", "does not fit", "high: 0.3"]),
    ({"width": {"type": "int", "low": 8, "high": 32, "step": 0}}, ["width.step", "positive"]),
    ({"width": {"type": "float", "low": 8, "high": 32}}, ["width", "use type: int"]),
    ({"width": {"type": "int", "low": 8.5, "high": 32}}, ["width.low", "whole number"]),
    ({"optimizer": {"type": "float", "low": 0, "high": 1}}, ["optimizer", "categorical"]),
    ({"lr": {"type": "foat", "low": 1e-3, "high": 1e-2}}, ["lr.type", "Did you mean 'float'"]),
    ({"lr": {"type": "float", "low": 1e-3, "high": 1e-2, "lo": 1}},
     ["lr", "unknown key 'lo'", "Allowed keys"]),
    ({"lr": {"type": "float", "high": 1e-2}}, ["lr", "missing low"]),
    ({"dropout": {"type": "float", "low": 0.0, "high": 0.99}},
     ["dropout", "0.99", "refused by the configuration", "[0.0, 0.95]"]),
    ({"lr": {"type": "float", "low": 1e-3, "high": 20.0, "log": True}}, ["lr", "20.0", "refused"]),
    ({"optimizer": {"type": "categorical", "choices": ["adam", "sgdd"]}},
     ["optimizer", "'sgdd'", "Did you mean 'sgd'"]),
    ({"optimizer": {"type": "categorical", "choices": ["adam", "adam"]}}, ["repeats"]),
    ({"seed": {"type": "int", "low": 0, "high": 3}}, ["seed", "cannot be searched", "--seeds"]),
    ({"threads": {"type": "int", "low": 1, "high": 3}}, ["threads", "cannot be searched"]),
    ({"lr": 0.01}, ["lr", "not a distribution"]),
    ({"lr": {"type": "float", "low": 1e-3, "high": 1e-2, "step": 1e-3, "log": True}},
     ["lr", "step and log"]),
    ({}, ["empty"]),
]


@pytest.mark.parametrize("space,words", BAD, ids=[str(i) for i in range(len(BAD))])
def test_bad_space_is_a_config_error_naming_field_and_fix(space, words):
    with pytest.raises(ConfigError) as e:
        load_space(space, CFG)
    msg = str(e.value)
    for w in words:
        assert w in msg, (w, msg)
    assert "\n" not in msg


def test_space_files(tmp_path: Path):
    (tmp_path / "bad.yaml").write_text("lr: {type: float, low: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_space(tmp_path / "bad.yaml", CFG)
    (tmp_path / "empty.yaml").write_text("")
    with pytest.raises(ConfigError, match="empty"):
        load_space(tmp_path / "empty.yaml", CFG)
    with pytest.raises(ConfigError, match="neither a built-in space"):
        load_space("baias", CFG)
    (tmp_path / "ok.yaml").write_text("width: {type: int, low: 8, high: 32, log: true}\n"
                                      "augment: {type: categorical, choices: [none, light]}\n")
    s = load_space(tmp_path / "ok.yaml", CFG)
    assert list(s) == ["width", "augment"]
    # the resolved space round-trips through space.yaml
    assert load_space(__import__("yaml").safe_load(s.to_yaml()), CFG).to_dict() == s.to_dict()


@pytest.mark.parametrize("name", sorted(SPACES))
@pytest.mark.parametrize("cfg", [CFG, ExperimentConfig(dataset="digits", model="cnn"),
                                 ExperimentConfig(), ExperimentConfig(
                                     dataset="digits", weight_decay=1e-3, dropout=0.2,
                                     augment="light")],
                         ids=["digits-mlp", "digits-cnn", "fashion-cnn", "regularised"])
def test_builtin_spaces_are_valid(name, cfg):
    s = load_space(name, cfg)
    assert len(s) >= 3
    from biasvar.knobs import KNOBS

    for k in s:
        assert k in KNOBS or k == "augment"
    if name == "bias":
        assert {"width", "lr", "epochs"} <= set(s)
        assert s.contains(s.defaults(cfg))  # the starting point lies inside: enqueued first
    else:
        assert {"weight_decay", "dropout", "label_smoothing"} <= set(s)
    with pytest.raises(ConfigError, match="grid sampler"):
        s.grid()  # continuous ranges


def test_grid():
    s = load_space({"width": {"type": "int", "low": 8, "high": 32, "step": 8},
                    "dropout": {"type": "float", "low": 0.0, "high": 0.2, "step": 0.1},
                    "augment": {"type": "categorical", "choices": ["none", "light"]}}, CFG)
    assert s.grid() == {"width": [8, 16, 24, 32], "dropout": [0.0, 0.1, 0.2],
                        "augment": ["none", "light"]}
    assert s.grid_size() == 24
    cont = load_space({"lr": {"type": "float", "low": 1e-3, "high": 1e-2}}, CFG)
    with pytest.raises(ConfigError, match=r"lr.*continuous.*step"):
        cont.grid()


def test_cli_bad_space_exits_2_with_one_line_and_writes_nothing(tmp_path: Path):
    (tmp_path / "bad.yaml").write_text("widht: {type: int, low: 8, high: 32}\n")
    r = run_cli_here("tune", "--space", "bad.yaml", "--dataset", "digits", "--model", "mlp",
                     "--out", "out", cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("biasvar: error:"), r.stderr
    assert "widht" in lines[0] and "width" in lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.yaml"]

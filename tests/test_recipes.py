"""``--recipe``: a named set of training options, layered defaults < --config < recipe < flags;
the same options in Python through ``biasvar.recipe``."""
from __future__ import annotations

import argparse

import pytest

from biasvar import ExperimentConfig, recipe
from biasvar.cli import build_parser, config_from_args
from biasvar.config import resolve
from biasvar.errors import ConfigError
from biasvar.recipes import RECIPES

from .conftest import run_cli_here


def _cfg(argv: list[str]) -> ExperimentConfig:
    parser, _ = build_parser()
    args: argparse.Namespace = parser.parse_args(argv)
    return config_from_args(args)


def test_the_recipe_sets_its_options_and_the_flags_given_win(capsys):
    cfg = _cfg(["train", "--recipe", "fast", "--dataset", "fashion-mnist", "--epochs", "2"])
    want = recipe("fast", "fashion-mnist")
    for k, v in want.items():
        if k != "epochs":
            assert getattr(cfg, k) == v, k
    assert cfg.epochs == 2 and want["epochs"] != 2
    err = capsys.readouterr().err
    assert "recipe fast:" in err and "yours: epochs" in err and "width 24" in err
    # without the flag the recipe's own epochs for the dataset; on another dataset none
    assert _cfg(["train", "--recipe", "fast", "--dataset", "fashion-mnist"]).epochs == \
        want["epochs"]
    digits = resolve(_cfg(["train", "--recipe", "fast", "--dataset", "digits"]))
    assert "epochs" not in recipe("fast", "digits")
    assert digits.epochs == resolve(ExperimentConfig(dataset="digits")).epochs
    assert digits.schedule == "onecycle" and digits.width == recipe("fast")["width"]


def test_the_recipe_overrides_a_config_file_and_the_flags_override_both(tmp_path):
    (tmp_path / "c.yaml").write_text("dataset: digits\noptimizer: sgd\nlr: 0.5\nseed: 7\n")
    cfg = _cfg(["train", "--config", str(tmp_path / "c.yaml"), "--recipe", "fast",
                "--lr", "0.01"])
    assert cfg.optimizer == recipe("fast")["optimizer"] != "sgd"  # the recipe over the file
    assert cfg.lr == 0.01  # the flag over the recipe
    assert cfg.seed == 7 and cfg.dataset == "digits"  # what the recipe leaves: the file's


def test_without_the_recipe_nothing_changes():
    assert _cfg(["train", "--dataset", "digits"]) == ExperimentConfig(dataset="digits")


def test_an_unknown_recipe_is_one_clear_error(tmp_path):
    r = run_cli_here("train", "--recipe", "fsat", "--dataset", "digits", "--out",
                     str(tmp_path / "o"))
    assert r.returncode == 2 and "--recipe" in r.stderr and "fast" in r.stderr
    assert not (tmp_path / "o").exists()
    with pytest.raises(ConfigError, match=r"recipe: unknown value 'fsat'.*Did you mean 'fast'"):
        recipe("fsat")


def test_every_recipe_is_a_valid_config_on_every_builtin_dataset():
    for name in RECIPES:
        for ds in ("fashion-mnist", "mnist", "cifar10", "digits"):
            resolve(ExperimentConfig(**{**recipe(name, ds), "dataset": ds}))  # validates

from __future__ import annotations

from dataclasses import replace

import pytest

from biasvar.config import (ExperimentConfig, config_hash, from_dict, load_config, resolve,
                            to_yaml)
from biasvar.errors import ConfigError


def test_defaults_resolve_per_dataset_and_model():
    c = resolve(ExperimentConfig(dataset="digits", model="mlp"))
    assert (c.epochs, c.batch_size, c.width, c.depth) == (20, 32, 256, 2)
    c = resolve(ExperimentConfig(dataset="fashion-mnist", model="cnn", width=64))
    assert c.width == 64 and c.depth == 2 and c.epochs == 3
    # a per-dataset model default: Fashion-MNIST's CNN is half the usual width
    assert resolve(ExperimentConfig(dataset="fashion-mnist", model="cnn")).width == 16
    assert resolve(ExperimentConfig(dataset="cifar10", model="cnn")).width == 32


@pytest.mark.parametrize("field,value,words", [
    ("lr", -1, ["lr", "-1", "(0.0, 10.0]"]),
    ("dropout", 1.5, ["dropout", "1.5", "[0.0, 0.95]"]),
    ("epochs", 0, ["epochs", "0", "[1"]),
    ("val_fraction", 0.0, ["val_fraction", "(0.0, 0.9]"]),
])
def test_out_of_range_names_field_value_and_range(field, value, words):
    with pytest.raises(ConfigError) as e:
        ExperimentConfig(**{field: value})
    for w in words:
        assert w in str(e.value)


def test_wrong_types_and_unknown_keys():
    with pytest.raises(ConfigError, match="epochs: expected an integer, got 'ten'"):
        from_dict({"epochs": "ten"})
    with pytest.raises(ConfigError, match="epochs: expected an integer, got 2.5"):
        from_dict({"epochs": 2.5})
    with pytest.raises(ConfigError, match="Did you mean 'weight_decay'"):
        from_dict({"weight_decy": 0.1})
    with pytest.raises(ConfigError, match="Did you mean 'cosine'"):
        from_dict({"schedule": "cosin"})
    assert from_dict({"batchnorm": "false", "epochs": "3"}).batchnorm is False


def test_yaml_round_trip_and_flags_override(tmp_path):
    cfg = resolve(ExperimentConfig(dataset="digits", width=48, dropout=0.25))
    p = tmp_path / "c.yaml"
    p.write_text(to_yaml(cfg, note="bookkeeping keys are ignored"))
    assert load_config(p) == cfg
    assert load_config(p, width="16").width == 16
    p.write_text("- a list\n")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        load_config(p)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")


def test_hash_ignores_runtime_fields_only():
    a = ExperimentConfig()
    assert config_hash(a) == config_hash(replace(a, device="cpu", threads=2, data_root="/x"))
    assert config_hash(a) != config_hash(replace(a, width=64))
    assert config_hash(a) != config_hash(replace(a, seed=1))

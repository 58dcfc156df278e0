"""The command line as a user meets it: outputs, the run-directory contract, bad input."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from biasvar import ExperimentConfig, fit, load_data

from .conftest import run_cli, run_cli_here

FAST = ["--dataset", "digits", "--threads", "1", "--no-progress", "--no-report"]


def _snapshot(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("run") / "r"
    r = run_cli("train", *FAST, "--model", "cnn", "--epochs", "3", "--out", str(out))
    assert r.returncode == 0, r.stderr
    return out


def test_train_writes_the_run_directory_contract(trained):
    for f in ("config.yaml", "env.json", "history.csv", "metrics.json", "last.pt", "best.pt",
              "splits.npz", "gallery.json"):
        assert (trained / f).is_file(), f
    m = json.loads((trained / "metrics.json").read_text())
    assert set(m) == {"train", "val", "test"}
    for split in m.values():
        for k in ("accuracy", "precision_macro", "recall_macro", "f1_macro", "confusion_matrix",
                  "per_class", "ece", "top5_accuracy"):
            assert k in split
        assert set(split["per_class"]["3"]) >= {"precision", "recall", "f1", "support"}
        assert np.array(split["confusion_matrix"]).sum() == split["n"]
    env = json.loads((trained / "env.json").read_text())
    assert env["torch"].startswith("2.14.1") and env["seed"] == 0
    assert env["precision"]["auto"] is True and len(env["precision"]["timings_ms"]) >= 2
    splits = np.load(trained / "splits.npz")
    assert len(splits["train"]) == m["train"]["n"] and len(splits["test"]) == m["test"]["n"]


def test_evaluate_reproduces_metrics(trained):
    before = json.loads((trained / "metrics.json").read_text())
    r = run_cli("evaluate", str(trained))
    assert r.returncode == 0, r.stderr
    after = json.loads((trained / "metrics.json").read_text())
    for s in ("train", "val", "test"):
        assert after[s]["accuracy"] == before[s]["accuracy"]
        assert after[s]["loss"] == pytest.approx(before[s]["loss"], rel=1e-5)
    assert "accuracy" in r.stdout


def test_same_command_again_does_not_retrain(trained):
    stamp = (trained / "last.pt").stat().st_mtime_ns
    r = run_cli("train", *FAST, "--model", "cnn", "--epochs", "3", "--out", str(trained))
    assert r.returncode == 0 and "already trained" in r.stdout
    assert (trained / "last.pt").stat().st_mtime_ns == stamp


def test_config_file_and_flag_override(tmp_path):
    (tmp_path / "c.yaml").write_text("dataset: digits\nmodel: mlp\nwidth: 16\nepochs: 1\n")
    r = run_cli("train", "--config", str(tmp_path / "c.yaml"), "--width", "24", "--threads", "1",
                "--no-progress", "--no-report", "--out", str(tmp_path / "o"))
    assert r.returncode == 0, r.stderr
    saved = (tmp_path / "o" / "config.yaml").read_text()
    assert "width: 24" in saved and "model: mlp" in saved


@pytest.mark.parametrize("args,words", [
    (["--dataset", "fashion-mnst"], ["dataset", "fashion-mnst", "Did you mean 'fashion-mnist'"]),
    (["--model", "cnm"], ["model", "'cnm'", "Did you mean 'cnn'"]),
    (["--optimizer", "adamm"], ["optimizer", "adamm", "adam"]),
    (["--epochs", "three"], ["epochs", "three", "integer"]),
    (["--lr", "-0.1"], ["lr", "-0.1", "out of range", "(0.0, 10.0]"]),
    (["--dropout", "2"], ["dropout", "2", "[0.0, 0.95]"]),
    (["--augment", "strng"], ["augment", "strng", "strong"]),
    (["--data-root", "/no/such/folder", "--dataset", "mnist"], ["data_root", "/no/such/folder"]),
])
def test_bad_input_is_one_clear_message(tmp_path, args, words):
    base = ["train", "--dataset", "digits", "--no-progress", "--out", str(tmp_path / "o")]
    r = run_cli_here(*base, *args)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    for w in words:
        assert w in r.stderr, r.stderr
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def test_bad_resume_loses_nothing(trained, tmp_path):
    before = _snapshot(trained)
    (tmp_path / "trunc.pt").write_bytes((trained / "last.pt").read_bytes()[:1000])
    torch.save({"w": torch.zeros(2)}, tmp_path / "foreign.pt")
    for ck, words in ((tmp_path / "trunc.pt", "truncated"), (tmp_path / "foreign.pt",
                                                             "not written by biasvar")):
        r = run_cli_here("train", *FAST, "--model", "cnn", "--epochs", "4", "--out", str(trained),
                         "--resume", str(ck))
        assert r.returncode == 2 and words in r.stderr and "Traceback" not in r.stderr
    assert _snapshot(trained) == before


def test_nan_in_the_first_epoch_is_one_clear_error_and_claims_no_checkpoint(tmp_path):
    """Diverging in epoch 1 leaves no model to keep: the message says so, and no last.pt or
    best.pt pretends otherwise (a divergence after a good epoch keeps its last.pt: see
    tests/train/test_divergence.py)."""
    r = run_cli("train", *FAST, "--model", "mlp", "--no-batchnorm", "--optimizer", "sgd",
                "--lr", "10", "--momentum", "0.99", "--schedule", "constant", "--epochs", "20",
                "--out", str(tmp_path / "o"))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "NaN or infinite" in r.stderr and "--lr 1" in r.stderr
    assert "in epoch 1" in r.stderr and "nothing was saved" in r.stderr
    assert not (tmp_path / "o" / "last.pt").exists() and not (tmp_path / "o" / "best.pt").exists()


def test_datasets_and_models_listings():
    r = run_cli_here("datasets")
    assert r.returncode == 0
    for name in ("fashion-mnist", "mnist", "cifar10", "digits", "imagefolder:PATH"):
        assert name in r.stdout
    from biasvar.config import resolve
    from biasvar.models import count_params, create_model

    r = run_cli_here("models", "--dataset", "digits")
    assert r.returncode == 0 and "cnn" in r.stdout and "mlp" in r.stdout
    n = count_params(create_model("mlp", num_classes=10, in_shape=(1, 8, 8), width=256, depth=2))
    assert f"{n:,}" in r.stdout
    # the width and count a dataset's own defaults give (Fashion-MNIST's CNN is half as wide)
    r = run_cli_here("models", "--dataset", "fashion-mnist")
    cfg = resolve(ExperimentConfig(dataset="fashion-mnist", model="cnn"))
    n = count_params(create_model("cnn", num_classes=10, in_shape=(1, 28, 28), width=cfg.width,
                                  depth=cfg.depth))
    row = next(line for line in r.stdout.splitlines() if line.startswith("cnn "))
    assert row.split()[1:3] == [f"{n:,}", f"{cfg.width}/{cfg.depth}"], row


@pytest.mark.parametrize("opt,schedule", [("sgd", "step"), ("adamw", "onecycle"),
                                          ("adam", "constant")])
def test_optimizers_schedules_and_regularisers_train(opt, schedule):
    cfg = ExperimentConfig(dataset="digits", model="cnn", optimizer=opt, schedule=schedule,
                           epochs=3, step_epochs=1, step_gamma=0.5, lr=0.05 if opt == "sgd" else 3e-3,
                           weight_decay=1e-4, label_smoothing=0.1, dropout=0.2,
                           augment="light", precision="fp32", channels_last="off")
    res = fit(cfg, load_data(cfg), progress=False)
    assert res.history[-1]["val_accuracy"] > 0.5
    lrs = [h["lr"] for h in res.history]
    if schedule == "step":  # halves (step_gamma) every epoch
        assert lrs[1] == pytest.approx(lrs[0] * 0.5)
    if schedule == "constant":
        assert lrs[0] == lrs[-1]


def test_l1_penalty_shrinks_weights():
    cfg = ExperimentConfig(dataset="digits", model="mlp", width=32, epochs=3, precision="fp32")
    data = load_data(cfg)

    def l1(model):
        return sum(float(p.detach().abs().sum()) for p in model.parameters() if p.ndim > 1)

    plain = fit(cfg, data, progress=False).model
    from dataclasses import replace

    sparse = fit(replace(cfg, l1=1e-2), data, progress=False).model
    assert l1(sparse) < 0.7 * l1(plain)


# -- the parser: no abbreviations, errors that name the command and the nearest flag ----------

def _parse_error(argv, capsys) -> str:
    from biasvar.cli import main

    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    return capsys.readouterr().err


def test_flags_are_never_abbreviated(capsys):
    err = _parse_error(["train", "--dataset", "digits", "--epoch", "5"], capsys)
    assert "biasvar train: error: unrecognized arguments: --epoch 5" in err
    assert "Did you mean '--epochs'?" in err


def test_an_unknown_flag_names_its_command_and_the_nearest_flag(capsys):
    err = _parse_error(["diagnose", "--datset", "mnist"], capsys)
    assert err.startswith("usage: biasvar diagnose")
    assert "biasvar diagnose: error: unrecognized arguments: --datset mnist" in err
    assert "Did you mean '--dataset'?" in err
    err = _parse_error(["curve", "learning", "--sise", "100"], capsys)
    assert "biasvar curve learning: error:" in err and "'--sizes'" in err


def test_an_unknown_dataset_is_named_before_the_target_error(tmp_path):
    r = run_cli_here("diagnose", "--dataset", "cifar100", "--out", str(tmp_path / "o"))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "dataset: unknown value 'cifar100'" in r.stderr and "target_error" not in r.stderr
    assert not (tmp_path / "o").exists()


def test_help_shows_types_and_resolved_defaults(capsys):
    from biasvar.cli import main

    with pytest.raises(SystemExit):
        main(["diagnose", "--help"])
    out = capsys.readouterr().out
    assert " V " not in out and "dataset default" not in out
    assert "--epochs INT" in out and "--lr FLOAT" in out and "--profile {quick,thorough}" in out
    flat = " ".join(out.split())
    assert "per dataset: fashion-mnist 3, mnist 5, cifar10 20, digits 20, others 10" in flat
    assert "per model: mlp 256, cnn 32, resnet18 64, resnet34 64 (cnn 16 on fashion-mnist)" \
        in flat
    assert "Every fit trains as configured" in flat


def test_every_command_parses_to_a_function():
    from biasvar.cli import build_parser

    parser, subs = build_parser()
    for name, p in subs.items():
        if name == "curve":
            continue
        assert callable(p.get_default("func")), name


def test_options_a_command_does_not_use_are_refused(tmp_path, capsys):
    # the target error changes only the diagnose verdict: a curve does not take it
    err = _parse_error(["curve", "learning", "--dataset", "digits", "--target-error", "0"], capsys)
    assert "unrecognized arguments: --target-error 0" in err
    # predictions made elsewhere are analysed as given: training options would change nothing
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(3, 20, 4))
    lp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    np.savez(tmp_path / "p.npz", log_probs=lp, labels=rng.integers(0, 4, 20))
    from biasvar.cli import main

    assert main(["decompose", "--from-predictions", str(tmp_path / "p.npz"), "--rounds", "7",
                 "--epochs", "3", "--no-report", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "--epochs, --rounds would change nothing" in err and not (tmp_path / "o").exists()
    assert main(["decompose", "--from-predictions", str(tmp_path / "p.npz"), "--sampling",
                 "split", "--no-report", "--out", str(tmp_path / "o")]) == 0
    assert json.loads((tmp_path / "o" / "results.json").read_text())["decomposition"][
        "sampling"] == "split"

"""Every option a training command accepts reaches its fits, or is refused, or is allowed.

For each command that trains (``train``, ``diagnose``, ``curve learning``, ``curve complexity``,
``decompose``; and ``evaluate``, which re-scores) the options are enumerated from the parser
``biasvar.cli.build_parser`` builds. Each option, set to a non-default value on top of a small
digits run, must either

(a) change what the command computes: the fits it would train — for each, what its Trainer
    holds before the first step (training rows and labels, validation/test data, architecture,
    initial weights, trainable parameters, optimizer hyper-parameters, the learning rate of
    every step, loss, augmentation, early stopping, callbacks) — or the target error the
    verdict uses, or the checkpoint ``evaluate`` scores; or
(b) be refused: exit status 2 and a message naming the option (no traceback, no unfilled
    ``{placeholder}``); or
(c) be listed in ALLOWED, with the reason it changes only where or how a run happens.

Nothing is trained: the CLI runs in this process with ``fit`` / the fit executor replaced by a
stub that records what it was handed, so the whole file takes seconds. An option that silently
does nothing makes its case fail.
"""
from __future__ import annotations

import copy
import functools
import hashlib
import re
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml

from biasvar import cli

COMMANDS = ("train", "evaluate", "diagnose", "curve learning", "curve complexity", "decompose")

#: a small digits run every case starts from (no precision timing, one thread, no report)
COMMON = ["--dataset", "digits", "--model", "mlp", "--width", "16", "--depth", "1",
          "--epochs", "2", "--threads", "1", "--precision", "fp32", "--channels-last", "off",
          "--no-progress", "--no-report"]
BASE = {
    "train": ["train", *COMMON],
    "diagnose": ["diagnose", *COMMON, "--rounds", "2"],
    "curve learning": ["curve", "learning", *COMMON, "--sizes", "0.5,1", "--seeds", "1"],
    "curve complexity": ["curve", "complexity", *COMMON, "--param", "width", "--values", "8,16",
                         "--seeds", "1"],
    "decompose": ["decompose", *COMMON, "--rounds", "2"],
    "evaluate": ["evaluate", "{run}"],
}

#: a non-default value of each option (``{images}``, ``{weights}``: files made below)
PROBES: dict[str, list[str]] = {
    # data
    "dataset": ["--dataset", "imagefolder:{images}"],
    "val_fraction": ["--val-fraction", "0.2"],
    "test_fraction": ["--test-fraction", "0.3"],
    "split_seed": ["--split-seed", "1"],
    "train_subset": ["--train-subset", "600"],
    "test_subset": ["--test-subset", "100"],
    "augment": ["--augment", "light"],
    "augment_strength": ["--augment-strength", "2"],
    "image_size": ["--image-size", "12"],
    "channels": ["--channels", "3"],
    # model
    "model": ["--model", "cnn"],
    "width": ["--width", "24"],
    "depth": ["--depth", "2"],
    "dropout": ["--dropout", "0.3"],
    "batchnorm": ["--no-batchnorm"],
    "weights": ["--weights", "{weights}"],
    "recipe": ["--recipe", "fast"],
    "freeze_backbone": ["--freeze-backbone"],
    "backbone_lr": ["--backbone-lr", "0.1"],
    # training
    "optimizer": ["--optimizer", "sgd"],
    "lr": ["--lr", "0.01"],
    "momentum": ["--momentum", "0.5"],
    "weight_decay": ["--weight-decay", "0.001"],
    "l1": ["--l1", "0.0001"],
    "label_smoothing": ["--label-smoothing", "0.1"],
    "schedule": ["--schedule", "constant"],
    "step_epochs": ["--step-epochs", "1"],
    "step_gamma": ["--step-gamma", "0.5"],
    "snapshots": ["--snapshots", "2"],
    "epochs": ["--epochs", "3"],
    "batch_size": ["--batch-size", "16"],
    "early_stopping": ["--early-stopping"],
    "monitor": ["--monitor", "val_accuracy"],
    "patience": ["--patience", "2"],
    "min_delta": ["--min-delta", "0.01"],
    "seed": ["--seed", "1"],
    "tensorboard": ["--tensorboard"],
    # analyses
    "profile": ["--profile", "thorough"],
    "rounds": ["--rounds", "3"],
    "sampling": ["--sampling", "seed"],
    "fraction": ["--fraction", "0.3"],
    "label_noise": ["--label-noise", "0.2"],
    "sizes": ["--sizes", "0.25,1"],
    "seeds": ["--seeds", "3"],
    "param": ["--param", "depth"],
    "values": ["--values", "8,32"],
    "target_error": ["--target-error", "0.1"],
    # evaluate
    "checkpoint": ["--checkpoint", "best"],
}

#: options used only with another setting: there (added to both sides) they must reach too
CONTEXT: dict[str, list[str]] = {
    "momentum": ["--optimizer", "sgd"],
    "step_epochs": ["--schedule", "step"],
    "step_gamma": ["--schedule", "step", "--step-epochs", "1"],  # a decay within 2 epochs
    "patience": ["--early-stopping"],
    "monitor": ["--early-stopping"],
    "min_delta": ["--early-stopping"],
    "augment_strength": ["--augment", "light"],
    "image_size": ["--dataset", "imagefolder:{images}"],
    "channels": ["--dataset", "imagefolder:{images}"],
    "fraction": ["--sampling", "subsample"],
}
#: per command, where it differs (a complexity curve decomposes only with --rounds)
COMMAND_CONTEXT: dict[tuple[str, str], list[str]] = {
    ("curve complexity", "sampling"): ["--rounds", "2"],
    ("curve complexity", "label_noise"): ["--rounds", "2"],
    ("curve complexity", "fraction"): ["--rounds", "2", "--sampling", "subsample"],
}

#: options that by design change only where or how a run happens, not what it computes
ALLOWED: dict[str, str] = {
    "config": "a YAML file of the other options, each probed here as a flag (its analysis "
              "section: test_config_file_analysis_section_reaches_the_fits)",
    "out": "names the run directory",
    "fresh": "removes an earlier run's files first; the same fits are trained",
    "resume": "continues the run directory's fit from last.pt: the same fit",
    "progress": "--no-progress hides the progress bars",
    "report": "--no-report skips rendering report.html from the saved results",
    "workers": "trains the same fits in N local processes",
    "backend": "where the fits train (this machine or Ray tasks): the same fits",
    "address": "which Ray cluster trains the fits (with --backend ray only)",
    "dry_run": "prints the plan instead of training it",
    "verbose": "prints every table of the results (tests/analysis/test_api.py checks it)",
    "json": "prints only results.json's path (tests/analysis/test_api.py checks it)",
    "from_predictions": "analyses given predictions instead of training; it refuses training "
                        "options: test_from_predictions_refuses_training_options",
    "device": "where the fits run",
    "threads": "CPU threads of the fits",
    "loader_workers": "processes decoding streamed images: the same pixels",
    "stream": "whether custom images are decoded once or streamed from disk: the same pixels",
    "precision": "fp32 or bf16 autocast: speed (auto times both)",
    "channels_last": "memory layout of convolutions: speed",
    "side_by_side": "trains a group of the same fits with one batched step: speed "
                    "(tests/analysis/test_side_by_side_jobs.py checks the choice and the "
                    "results)",
    "data_root": "where dataset files are looked for (digits ships with scikit-learn)",
    "download": "whether a built-in dataset found nowhere may be downloaded",
    "strict": "whether unreadable image files stop the run or are skipped with a note",
}

#: (command, option) → why it does not reach yet and where the fix goes; the case is an
#: xfail(strict=True) until then (none today)
XFAIL: dict[tuple[str, str], str] = {}


# -- the command line, run in this process with training replaced by a recording stub ----------

@functools.cache
def _parsers() -> tuple[Any, dict[str, Any]]:
    return cli.build_parser()


def _options(command: str) -> list[str]:
    """The option dests ``command``'s parser accepts (help and positionals left out)."""
    _, subs = _parsers()
    return [a.dest for a in subs[command]._actions
            if a.option_strings and a.dest != "help"]


class _Handed(Exception):
    """Raised by the stubs: what the command handed to training."""

    def __init__(self, what: dict[str, Any]):
        self.what = what


def _digest(*tensors: Any) -> str:
    h = hashlib.sha256()
    for t in tensors:
        t = torch.as_tensor(t).detach().cpu().contiguous()
        h.update(str((t.dtype, tuple(t.shape))).encode())
        h.update(t.view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:16]


def fit_fingerprint(config: Any, data: Any, *, seed: int | None = None,
                    train_indices: np.ndarray | None = None, label_noise: float = 0.0,
                    noise_seed: int = 0, best_pt_read: bool = True) -> dict[str, Any]:
    """What a fit of ``config`` computes with, read from its Trainer before the first step.
    ``best_pt_read``: whether anything reads the best.pt it keeps (``train``'s user does; an
    analysis only when early stopping restores the best weights)."""
    from biasvar.analysis.jobs import noisy_labels
    from biasvar.config import resolve
    from biasvar.train import Trainer

    cfg = resolve(config)
    if seed is not None:
        cfg = replace(cfg, seed=seed)
    if label_noise > 0:  # as run_job does
        y = noisy_labels(data.train.y.numpy(), label_noise, data.num_classes, noise_seed)
        data = replace(data, train=replace(data.train, y=torch.from_numpy(y)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t = Trainer(cfg, data, seed=cfg.seed, train_indices=train_indices,
                    run_dir=Path("fingerprint"), callbacks=(), progress=None, desc="")
        opt, sched = copy.deepcopy((t.optimizer, t.scheduler))
        lrs = []
        for _ in range(t.total_steps):  # the learning rate of every step
            lrs.append(round(opt.param_groups[0]["lr"], 12))
            if len(lrs) < t.total_steps:
                sched.step()
    groups = [{k: v for k, v in g.items() if k not in ("params", "initial_lr")} | {
        "n_params": len(g["params"])} for g in t.optimizer.param_groups]
    return {
        "train data": (t.n, _digest(t.x, t.y)),
        "val/test data": _digest(data.val.x, data.val.y, data.test.x, data.test.y),
        "normalisation": (tuple(data.mean), tuple(data.std)),
        "model": repr(t.model),
        "initial weights": _digest(*t.model.state_dict().values()),
        "trainable": tuple(p.requires_grad for p in t.model.parameters()),
        "optimizer": (type(t.optimizer).__name__, repr(groups)),
        "lr per step": tuple(lrs),
        "loss": (t.loss_fn.label_smoothing, t.cfg.l1),
        "augment": repr(t.augment),
        "early stopping": ((t.early.monitor, t.early.patience, t.early.min_delta)
                           if best_pt_read or t.early.restore_best else None,
                           t.early.restore_best),
        "steps": (t.bs, t.steps_per_epoch, t.total_steps),
        "seed": t.seed,
        "callbacks": tuple(type(c).__name__ for c in t.callbacks),
    }


def _fingerprint(what: dict[str, Any]) -> dict[str, Any]:
    if what["kind"] == "fit":  # biasvar train
        return {"fit": fit_fingerprint(what["config"], what["data"])}
    if what["kind"] == "jobs":  # an analysis: every fit it plans, and its target error
        return {"fits": [fit_fingerprint(j.config, what["data"], seed=j.seed,
                                         train_indices=j.train_indices,
                                         label_noise=j.label_noise, noise_seed=j.noise_seed,
                                         best_pt_read=False)
                         for j in what["jobs"]],
                "tags": [j.tag.split(" seed=")[0] for j in what["jobs"]],
                "target error": what["target"], "reference value": what["reference"]}
    return {"checkpoint": what["checkpoint"]}  # biasvar evaluate


_DATA: dict[tuple, Any] = {}
_BASELINES: dict[tuple, dict[str, Any]] = {}


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """``{images}``: an imagefolder of 2 classes × 20 8×8 images; ``{weights}``: a state dict
    of the base model (other initial weights); ``{run}``: a train run directory to evaluate."""
    from PIL import Image

    from biasvar.config import ExperimentConfig, resolve, to_yaml
    from biasvar.models import create_model

    root = tmp_path_factory.mktemp("options")
    rng = np.random.default_rng(0)
    for k, name in enumerate(("dark", "light")):
        (root / "images" / name).mkdir(parents=True)
        for i in range(20):
            px = rng.integers(0, 120, (8, 8)) + 120 * k
            Image.fromarray(px.astype(np.uint8)).save(root / "images" / name / f"{i}.png")
    torch.manual_seed(123)
    model = create_model("mlp", num_classes=10, in_shape=(1, 8, 8), width=16, depth=1)
    torch.save(model.state_dict(), root / "weights.pt")
    run = root / "run"
    run.mkdir()
    (run / "config.yaml").write_text(to_yaml(resolve(ExperimentConfig(dataset="digits",
                                                                      model="mlp", epochs=2))))
    return {"images": str(root / "images"), "weights": str(root / "weights.pt"),
            "run": str(run)}


@pytest.fixture
def cli_run(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, files: dict):
    """``cli_run(argv)`` → ("handed", fingerprint) when the command reached training, else
    (exit status, stderr)."""
    import biasvar.analysis.jobs as jobs
    import biasvar.analysis.targets as targets
    import biasvar.data as data_pkg
    import biasvar.train as train_pkg

    real_load, real_target = data_pkg.load_data, targets.target_error
    seen: dict[str, Any] = {}

    def load_data(cfg: Any, **kw: Any) -> Any:  # the same data, loaded once per split
        if kw:
            return real_load(cfg, **kw)
        key = tuple(getattr(cfg, f) for f in (
            "dataset", "data_root", "download", "val_fraction", "test_fraction", "split_seed",
            "train_subset", "test_subset", "image_size", "channels", "strict", "stream"))
        if key not in _DATA:
            _DATA[key] = real_load(cfg)
        return _DATA[key]

    def target_error(dataset: str, value: Any) -> Any:
        seen["target"] = real_target(dataset, value)
        return seen["target"]

    def fit(config: Any, data: Any, **kw: Any) -> Any:
        raise _Handed({"kind": "fit", "config": config, "data": data})

    def execute(self: Any, jobs_: Any, store: Any, data: Any, on_done: Any,
                progress: Any = False) -> None:
        # a complexity curve's configured value of its knob (config.yaml, written before the
        # fits) is the reference the remedies compare the best value to
        saved = yaml.safe_load((Path(store.root).parent / "config.yaml").read_text())
        param = (saved.get("analysis") or {}).get("param")
        raise _Handed({"kind": "jobs", "jobs": list(jobs_), "data": data,
                       "target": seen.get("target"),
                       "reference": saved.get(param) if param else None})

    def load_checkpoint(path: Any) -> Any:
        raise _Handed({"kind": "checkpoint", "checkpoint": Path(path).name})

    monkeypatch.setattr(cli, "build_parser", _parsers)  # parsers are reusable: build them once
    monkeypatch.setattr(data_pkg, "load_data", load_data)
    monkeypatch.setattr(targets, "target_error", target_error)
    monkeypatch.setattr(train_pkg, "fit", fit)
    monkeypatch.setattr(train_pkg, "load_checkpoint", load_checkpoint)
    monkeypatch.setattr(jobs.SerialExecutor, "run", execute)

    def run(argv: list[str]) -> tuple[Any, Any]:
        argv = [a.format(**files) for a in argv]
        seen.clear()
        capsys.readouterr()
        try:
            rc = cli.main(argv)
        except SystemExit as e:  # argparse refuses an option it does not know
            rc = e.code
        except _Handed as h:
            return "handed", _fingerprint(h.what)
        return rc, capsys.readouterr().err
    return run


def _outcome(cli_run: Any, argv: list[str]) -> tuple[Any, Any]:
    key = tuple(argv)
    if key not in _BASELINES:
        _BASELINES[key] = cli_run(argv)
    return _BASELINES[key]


def _differences(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """What differs between two fingerprints (the fits' parts by name)."""
    if "fits" not in a:
        out = set()
        for k in a:
            x, y = a[k], b.get(k)
            out |= ({f"{k}: {p}" for p in x if x[p] != y[p]} if isinstance(x, dict) else
                    {k} if x != y else set())
        return sorted(out)
    if len(a["fits"]) != len(b["fits"]):
        return ["the number of fits"]
    out = {p for x, y in zip(a["fits"], b["fits"]) for p in x if x[p] != y[p]}
    return sorted(out | {k for k in ("target error", "reference value") if a[k] != b[k]})


def _check_reaches(cli_run: Any, command: str, option: str, base: list[str]) -> str:
    """'refused' or 'reached'; fails when ``option`` changes nothing."""
    before = _outcome(cli_run, base)
    assert before[0] == "handed", f"the base run of {command} did not reach training: {before}"
    probe = PROBES[option]
    got = cli_run([*base, *probe])
    shown = " ".join(probe)
    if got[0] != "handed":
        rc, err = got
        flag = "--" + option.replace("_", "-")
        assert rc == 2 and (flag in err or re.search(rf"\b{option}\b", err)), (
            f"`biasvar {command} {shown}` failed without a clear refusal naming {flag} "
            f"(exit {rc}): {err}")
        assert "Traceback" not in err
        assert not re.search(r"\{\w+\}", err), f"an unfilled placeholder in: {err}"
        return "refused"
    assert _differences(got[1], before[1]), (
        f"`biasvar {command} {shown}` changes nothing it computes (the same fits, the same "
        "target error) and is not refused: make it reach the fits, or refuse it (exit 2, "
        "naming it)")
    return "reached"


def _cases() -> list[Any]:
    out = []
    for command in COMMANDS:
        for option in _options(command):
            if option in ALLOWED:
                continue
            marks = ([pytest.mark.xfail(strict=True, reason=XFAIL[(command, option)])]
                     if (command, option) in XFAIL else [])
            out.append(pytest.param(command, option, marks=marks, id=f"{command}-{option}"))
    return out


def _context_cases() -> list[Any]:
    out = []
    for command in COMMANDS:
        for option in _options(command):
            if (command, option) in COMMAND_CONTEXT or option in CONTEXT:
                out.append(pytest.param(command, option, id=f"{command}-{option}"))
    return out


# -- the tests ------------------------------------------------------------------------------------

def test_every_option_is_probed_or_allowed():
    """A new option needs a probe value (PROBES) or a reason (ALLOWED)."""
    missing = {f"{c}: --{o.replace('_', '-')}" for c in COMMANDS for o in _options(c)
               if o not in PROBES and o not in ALLOWED}
    assert not missing, f"no probe value and no ALLOWED reason for: {sorted(missing)}"
    assert all(reason.strip() for reason in ALLOWED.values())


@pytest.mark.parametrize("command,option", _cases())
def test_option_reaches_the_fits_or_is_refused(cli_run, command, option):
    _check_reaches(cli_run, command, option, BASE[command])


@pytest.mark.parametrize("command,option", _context_cases())
def test_option_reaches_the_fits_where_it_applies(cli_run, command, option):
    """Options refused on the base run (used only with another setting) reach the fits with it."""
    context = COMMAND_CONTEXT.get((command, option), CONTEXT.get(option, []))
    assert _check_reaches(cli_run, command, option, [*BASE[command], *context]) == "reached"


def test_label_noise_reaches_the_complexity_curves_own_fits(cli_run):
    base = [*BASE["curve complexity"], "--rounds", "2"]
    (kind, before), (kind2, noisy) = _outcome(cli_run, base), cli_run([*base, "--label-noise",
                                                                         "0.2"])
    assert kind == kind2 == "handed"
    curve = [i for i, tag in enumerate(before["tags"]) if tag.startswith("complexity")]
    assert curve and all(noisy["fits"][i]["train data"] != before["fits"][i]["train data"]
                         for i in curve)


def test_diagnose_refuses_seeds(cli_run):
    rc, err = cli_run([*BASE["diagnose"], "--seeds", "3"])
    assert rc == 2 and "--seeds" in err


def test_config_file_analysis_section_reaches_the_fits(cli_run, tmp_path):
    (tmp_path / "c.yaml").write_text("label_smoothing: 0.1\nanalysis:\n  rounds: 3\n")
    base = BASE["decompose"][:-2]  # without --rounds
    kind, fp = cli_run([*base, "--config", str(tmp_path / "c.yaml")])
    assert kind == "handed" and len(fp["fits"]) == 3
    assert all(f["loss"][0] == 0.1 for f in fp["fits"])


def test_from_predictions_refuses_training_options(cli_run, tmp_path):
    rng = np.random.default_rng(0)
    lp = np.log(rng.dirichlet(np.ones(3), size=(2, 5)))
    np.savez(tmp_path / "p.npz", log_probs=lp, labels=np.array([0, 1, 2, 0, 1]))
    rc, err = cli_run(["decompose", "--from-predictions", str(tmp_path / "p.npz"),
                       "--epochs", "3", "--no-report"])
    assert rc == 2 and "--epochs" in err


@pytest.mark.parametrize("flags", [["--backend", "ray"], ["--address", "auto"]])
def test_from_predictions_refuses_cluster_options(cli_run, tmp_path, flags):
    # nothing is trained from given predictions, so a cluster would change nothing
    rng = np.random.default_rng(0)
    lp = np.log(rng.dirichlet(np.ones(3), size=(2, 5)))
    np.savez(tmp_path / "p.npz", log_probs=lp, labels=np.array([0, 1, 2, 0, 1]))
    rc, err = cli_run(["decompose", "--from-predictions", str(tmp_path / "p.npz"), *flags])
    assert rc == 2 and flags[0] in err
    assert not (tmp_path / "p-decomposition").exists()

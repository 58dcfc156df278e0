"""The user's own models: package.module:factory, resnet18/34, --weights, --freeze-backbone."""
from __future__ import annotations

import json
import os
import pickle
import sys
import uuid
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

from biasvar import ExperimentConfig, fit, load_data
from biasvar.errors import ConfigError, ModelError
from biasvar.models import count_params, create_model
from biasvar.models._external import (MIN_LOADED_FRACTION, WeightsWarning, find_head,
                                      freeze_backbone, load_weights)
from biasvar.train import build_model

from ..conftest import run_cli, run_cli_here
from ..data.test_custom_data import snapshot

FAST = ["--precision", "fp32", "--channels-last", "off", "--no-progress", "--no-report"]
DIGITS = dict(dataset="digits", precision="fp32", channels_last="off")

FACTORY = '''
import torch.nn as nn

def build(num_classes, in_shape, width=16):
    c, h, w = in_shape
    return nn.Sequential(nn.Flatten(), nn.Linear(c * h * w, width), nn.ReLU(),
                         nn.Linear(width, num_classes))

def build_any(**kwargs):
    BUILT.append(kwargs)
    c, h, w = kwargs["in_shape"]
    return nn.Sequential(nn.Flatten(), nn.Linear(c * h * w, kwargs["num_classes"]))

BUILT = []
NOT_A_FUNCTION = 42

def returns_dict(num_classes, in_shape):
    return {"model": None}

def raises(num_classes, in_shape):
    raise ValueError("width must be even")

def ignores_classes(num_classes, in_shape):
    c, h, w = in_shape
    return nn.Sequential(nn.Flatten(), nn.Linear(c * h * w, 3))

class Fixed28(nn.Module):
    def __init__(self, num_classes):
        super().__init__()
        self.fc = nn.Linear(28 * 28, num_classes)

    def forward(self, x):
        return self.fc(x.flatten(1))

def ignores_shape(num_classes, in_shape):
    return Fixed28(num_classes)
'''


def write_module(folder: Path, source: str = FACTORY) -> str:
    """A uniquely named module in ``folder`` (so no test sees another test's cached import)."""
    name = f"usermod_{uuid.uuid4().hex[:8]}"
    (folder / f"{name}.py").write_text(source)
    return name


@pytest.fixture(autouse=True)
def _fresh_warnings(monkeypatch):
    """Each test sees the once-per-process weights warnings afresh."""
    import biasvar.models._external as ext

    monkeypatch.setattr(ext, "_SAID", set())


@pytest.fixture(scope="module")
def digits():
    return load_data(ExperimentConfig(dataset="digits"))


def cli_error(tmp_path: Path, *args: str, words: tuple[str, ...]) -> str:
    """Status 2, no traceback, every word in the message, nothing written outside ``runs/``."""
    before = snapshot(tmp_path)
    r = run_cli_here(*args, cwd=tmp_path)
    assert r.returncode == 2, (r.stdout[-2000:], r.stderr[-3000:])
    assert "Traceback" not in r.stderr, r.stderr
    for w in words:
        assert w in r.stderr, (w, r.stderr)
    after = snapshot(tmp_path)
    changed = {k for k in after if after[k] != before.get(k)} | (set(before) - set(after))
    assert all(k.startswith("runs/") for k in changed), changed
    return r.stderr


# -- package.module:factory -----------------------------------------------------------------------


def test_user_factory_trains_through_the_cli(tmp_path):
    mod = write_module(tmp_path)
    out = tmp_path / "run"
    r = run_cli("train", "--dataset", "digits", "--model", f"{mod}:build", "--width", "24",
                "--epochs", "2", "--out", str(out), *FAST, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test"]["accuracy"] > 0.5  # chance is 0.1
    ck = torch.load(out / "last.pt", weights_only=True)
    assert ck["model"]["1.weight"].shape == (24, 64)  # width reached the factory
    assert not (tmp_path / "__pycache__").exists()  # no bytecode written next to the module


def test_factory_gets_only_the_knobs_it_accepts(tmp_path):
    mod = write_module(tmp_path)
    path_before = list(sys.path)
    m = create_model(f"{mod}:build", num_classes=5, in_shape=(1, 4, 4), width=7)
    assert [p.shape for p in m.parameters()] == [(7, 16), (7,), (5, 7), (5,)]
    # a knob set for a factory that cannot take it would change nothing: refused, not ignored
    with pytest.raises(ModelError, match="no parameter for depth 3, dropout 0.5"):
        create_model(f"{mod}:build", num_classes=5, in_shape=(1, 4, 4), width=7, depth=3,
                     dropout=0.5)
    assert sys.path == path_before  # the working folder was on sys.path only while importing
    create_model(f"{mod}:build_any", num_classes=5, in_shape=(1, 4, 4), width=7, depth=3)
    built = sys.modules[mod].BUILT[-1]
    assert built == dict(num_classes=5, in_shape=(1, 4, 4), width=7, depth=3, dropout=0.0,
                         batchnorm=True)


def test_factory_from_a_file_path(tmp_path):
    (tmp_path / "nets").mkdir()
    (tmp_path / "nets" / "small net.py").write_text(FACTORY)
    m = create_model("nets/small net.py:build", num_classes=3, in_shape=(1, 4, 4))
    assert isinstance(m, nn.Module) and count_params(m) == 16 * 16 + 16 + 3 * 16 + 3


@pytest.mark.parametrize("spec,words", [
    ("no_such_module_xyz:build", ("cannot import module 'no_such_module_xyz'",
                                  "No module named 'no_such_module_xyz'", "current folder")),
    ("{mod}:bulid", ("has no attribute 'bulid'", "Did you mean 'build'?")),
    ("{mod}:NOT_A_FUNCTION", ("'NOT_A_FUNCTION' is a int, not a function",)),
    ("{mod}:returns_dict", ("returned dict, not a torch.nn.Module",)),
    ("{mod}:raises", ("the factory raised ValueError: width must be even",
                      "{mod}.py, line {line})")),
    ("{mod}:ignores_classes", ("returns (2, 3); expected logits of shape (2, 10)",)),
    ("{mod}:ignores_shape", ("fails in forward()", "(2, 1, 8, 8)", "RuntimeError",
                             "{mod}.py, line")),
    ("not a module:build", ("is not a module name",)),
])
def test_bad_factories_are_clear_errors(tmp_path, spec, words):
    mod = write_module(tmp_path)
    line = FACTORY.splitlines().index('    raise ValueError("width must be even")') + 1
    cli_error(tmp_path, "train", "--dataset", "digits", "--model", spec.format(mod=mod),
              "--epochs", "1", *FAST, words=tuple(w.format(mod=mod, line=line) for w in words))


def test_factory_module_with_a_broken_import_or_syntax(tmp_path):
    bad_dep = write_module(tmp_path, "import no_such_dependency_abc\n")
    with pytest.raises(ModelError, match=r"importing '.*' failed: No module named "
                                         r"'no_such_dependency_abc'.*install what it needs"):
        create_model(f"{bad_dep}:build", num_classes=2, in_shape=(1, 4, 4))
    syntax = write_module(tmp_path, "def build(:\n    pass\n")
    cli_error(tmp_path, "train", "--dataset", "digits", "--model", f"{syntax}:build",
              *FAST, words=("failed with SyntaxError", f"{syntax}.py, line 1"))


# -- resnet18 / resnet34 --------------------------------------------------------------------------


@pytest.mark.parametrize("arch", ["resnet18", "resnet34"])
def test_resnet_matches_torchvision_at_width_64(arch):
    import torchvision

    ours = create_model(arch, num_classes=7, in_shape=(3, 96, 96), width=64, depth=4)
    ref = getattr(torchvision.models, arch)(num_classes=7)
    assert {k: v.shape for k, v in ours.state_dict().items()} == \
           {k: v.shape for k, v in ref.state_dict().items()}
    ref.load_state_dict(ours.state_dict())
    ours.eval(), ref.eval()
    x = torch.randn(2, 3, 96, 96)
    torch.testing.assert_close(ours(x), ref(x))


def test_resnet_adapts_to_channels_size_width_and_depth():
    small = create_model("resnet18", num_classes=10, in_shape=(1, 28, 28), width=8, depth=4)
    assert small.conv1.in_channels == 1 and small.conv1.kernel_size == (3, 3)
    assert small.conv1.stride == (1, 1) and isinstance(small.maxpool, nn.Identity)
    big = create_model("resnet18", num_classes=10, in_shape=(3, 65, 65), width=8, depth=4)
    assert big.conv1.kernel_size == (7, 7) and isinstance(big.maxpool, nn.MaxPool2d)
    convs = [m.out_channels for m in small.modules() if isinstance(m, nn.Conv2d)]
    assert sorted(set(convs)) == [8, 16, 32, 64] and small.fc.in_features == 64
    two = create_model("resnet34", num_classes=10, in_shape=(1, 28, 28), width=8, depth=2)
    assert not hasattr(two, "layer3") and two.fc.in_features == 16
    assert len(two.layer1) == 3 and len(two.layer2) == 4
    with pytest.raises(ConfigError, match="depth: 5 is out of range for resnet18.*1..4"):
        create_model("resnet18", num_classes=10, in_shape=(1, 28, 28), depth=5)
    nobn = create_model("resnet18", num_classes=3, in_shape=(1, 8, 8), width=4, depth=2,
                        batchnorm=False, dropout=0.3)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in nobn.modules())
    nobn.eval()
    assert nobn(torch.randn(2, 1, 8, 8)).shape == (2, 3)


def test_resnet_learns_digits(digits):
    cfg = ExperimentConfig(**DIGITS, model="resnet18", width=8, depth=2, epochs=3,
                           batch_size=128, lr=1e-2)
    res = fit(cfg, digits, progress=False)
    assert res.history[-1]["val_accuracy"] > 0.7, res.history  # chance is 0.1


# -- --weights ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cnn_run(tmp_path_factory, digits) -> Path:
    """A digits cnn trained for one epoch; its run directory holds last.pt and best.pt."""
    run = tmp_path_factory.mktemp("cnn_run")
    fit(ExperimentConfig(**DIGITS, model="cnn", width=8, epochs=1), digits, run_dir=run,
        progress=False)
    return run


def fresh_cnn(num_classes=10, seed=1, width=8):
    torch.manual_seed(seed)
    return create_model("cnn", num_classes=num_classes, in_shape=(1, 8, 8), width=width, depth=2)


def last_linear(model: nn.Module) -> str:
    return [n for n, m in model.named_modules() if isinstance(m, nn.Linear)][-1]


def test_weights_from_a_biasvar_checkpoint_or_state_dict(cnn_run, tmp_path):
    ck = torch.load(cnn_run / "last.pt", weights_only=True)
    for source in (cnn_run / "last.pt", cnn_run):  # a file, or a run directory (best.pt)
        m = fresh_cnn()
        notes = load_weights(m, source)
        want = ck["model"] if source != cnn_run else torch.load(cnn_run / "best.pt",
                                                                weights_only=True)["model"]
        for k, v in m.state_dict().items():
            assert torch.equal(v, want[k]), k
        n = len(m.state_dict())
        assert f"loaded {n} of {n} tensors" in notes[0] and "(100% of the parameters)" in notes[0]
    # a plain state dict saved by a DataParallel model ("module." prefix)
    torch.save({f"module.{k}": v for k, v in ck["model"].items()}, tmp_path / "dp.pt")
    m = fresh_cnn()
    load_weights(m, tmp_path / "dp.pt")
    assert all(torch.equal(v, ck["model"][k]) for k, v in m.state_dict().items())


def test_a_different_head_is_skipped_and_named(cnn_run):
    ck = torch.load(cnn_run / "last.pt", weights_only=True)["model"]
    m = fresh_cnn(num_classes=4)
    last = last_linear(m)
    init_head = m.head[-1].weight.detach().clone()
    with pytest.warns(WeightsWarning, match=rf"2 layers keep their initial values \(the "
                                            rf"classifier head.*{last}.weight \(file \(10, 32\), "
                                            rf"model \(4, 32\)\), {last}.bias"):
        load_weights(m, cnn_run / "last.pt")
    sd = m.state_dict()
    for k, v in sd.items():
        if k.startswith(last + "."):
            continue
        assert torch.equal(v, ck[k]), k
    assert torch.equal(m.head[-1].weight, init_head)


def test_weights_that_do_not_fit_name_the_layers(cnn_run):
    m = fresh_cnn(width=16)  # every layer has other shapes
    with pytest.raises(ModelError) as e:
        load_weights(m, cnn_run / "last.pt")
    msg = str(e.value)
    assert f"at least {MIN_LOADED_FRACTION:.0%} must" in msg
    assert "features.0.weight (file (8, 1, 3, 3), model (16, 1, 3, 3))" in msg
    mlp = create_model("mlp", num_classes=10, in_shape=(1, 8, 8), width=8, depth=1)
    with pytest.raises(ModelError, match=rf"only 0 of {count_params(mlp)} parameters \(0%\).*"
                                         r"features.1.weight \(file \(8,\), model \(8, 64\)\)"
                                         r".*not in the file: .*head.weight"):
        load_weights(mlp, cnn_run / "last.pt")


def test_pickled_code_in_a_weights_file_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    torch.save({"weight": torch.zeros(2), "x": Payload()}, tmp_path / "evil.pt")
    (tmp_path / "evil.pkl").write_bytes(pickle.dumps({"x": Payload()}))
    for f in ("evil.pt", "evil.pkl"):
        with pytest.raises(ModelError, match="holds code, not just weights"):
            load_weights(fresh_cnn(), tmp_path / f)
    assert not marker.exists()
    with pytest.raises(ModelError, match=r"references posix.system"):
        load_weights(fresh_cnn(), tmp_path / "evil.pt")


def test_pickle_payload_via_cli(tmp_path):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    torch.save({"model": Payload()}, tmp_path / "w.pt")
    cli_error(tmp_path, "train", "--dataset", "digits", "--weights", "w.pt", "--epochs", "1",
              *FAST, words=("weights: 'w.pt' holds code, not just weights", "nothing from the "
                            "file was run"))
    assert not marker.exists()


def test_wrong_shapes_via_cli(tmp_path, cnn_run):
    cli_error(tmp_path, "train", "--dataset", "digits", "--model", "cnn", "--width", "16",
              "--weights", str(cnn_run / "last.pt"), "--epochs", "1", *FAST,
              words=("does not fit this model", "features.0.weight (file (8, 1, 3, 3), "
                     "model (16, 1, 3, 3))"))


def test_unreadable_or_missing_weights(tmp_path):
    (tmp_path / "junk.pt").write_bytes(b"hello, not a tensor file")
    with pytest.raises(ModelError, match="not a PyTorch weights file or is damaged"):
        load_weights(fresh_cnn(), tmp_path / "junk.pt")
    with pytest.raises(ModelError, match="does not exist"):
        load_weights(fresh_cnn(), tmp_path / "none.pt")
    torch.save([1, 2, 3], tmp_path / "list.pt")
    with pytest.raises(ModelError, match="holds list, not a state dict"):
        load_weights(fresh_cnn(), tmp_path / "list.pt")


def test_torchvision_weights_load_and_first_conv_adapts_to_grey(tmp_path):
    import torchvision

    torch.manual_seed(0)
    tv = torchvision.models.resnet18(num_classes=1000)  # stands in for a downloaded file
    torch.save(tv.state_dict(), tmp_path / "resnet18.pth")
    src = tv.state_dict()
    m = create_model("resnet18", num_classes=5, in_shape=(1, 96, 96))
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        notes = load_weights(m, tmp_path / "resnet18.pth")
    torch.testing.assert_close(m.conv1.weight, src["conv1.weight"].sum(1, keepdim=True))
    for k, v in m.state_dict().items():
        if not k.startswith(("fc.", "conv1.")):
            assert torch.equal(v, src[k]), k
    assert any("conv1.weight (3 → 1 input channels)" in n for n in notes)
    assert any("fc.weight (file (1000, 512), model (5, 512))" in str(x.message) for x in w)


# -- --freeze-backbone ----------------------------------------------------------------------------


def test_find_head_rules():
    assert find_head(fresh_cnn())[0] == "head"
    assert find_head(create_model("resnet18", num_classes=3, in_shape=(1, 8, 8), width=4,
                                  depth=1))[0] == "fc"

    class WithClassifier(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Linear(4, 4)
            self.classifier = nn.Sequential(nn.ReLU(), nn.Linear(4, 2))

    assert find_head(WithClassifier())[0] == "classifier"
    seq = nn.Sequential(nn.Flatten(), nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))
    assert find_head(seq)[0] == "3"
    with pytest.raises(ModelError, match="no head to train"):
        freeze_backbone(nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten()))


def test_frozen_backbone_keeps_weights_and_batchnorm_statistics(cnn_run, digits):
    cfg = ExperimentConfig(**DIGITS, model="cnn", width=8, epochs=2,
                           weights=str(cnn_run / "last.pt"), freeze_backbone=True)
    start = torch.load(cnn_run / "last.pt", weights_only=True)["model"]
    with pytest.warns(WeightsWarning, match="training only the head 'head'"):
        model = build_model(cfg, digits)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {n for n, _ in model.named_parameters() if n.startswith("head.")}
    res = fit(cfg, digits, progress=False)
    end = res.model.state_dict()
    for k, v in end.items():
        if k.startswith("features."):  # conv weights and BN running statistics untouched
            assert torch.equal(v.cpu(), start[k]), k
    last = last_linear(res.model)
    assert not torch.equal(end[f"{last}.weight"].cpu(), start[f"{last}.weight"])


def test_weights_and_freeze_backbone_through_the_cli(tmp_path, cnn_run):
    out = tmp_path / "run"
    r = run_cli("train", "--dataset", "digits", "--model", "cnn", "--width", "8",
                "--weights", str(cnn_run / "last.pt"), "--freeze-backbone", "--epochs", "1",
                "--out", str(out), *FAST, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "Traceback" not in r.stderr
    assert "training only the head 'head'" in r.stderr
    ck = torch.load(out / "last.pt", weights_only=True)["model"]
    start = torch.load(cnn_run / "last.pt", weights_only=True)["model"]
    assert torch.equal(ck["features.0.weight"], start["features.0.weight"])


def test_a_complexity_sweep_over_a_knob_the_factory_lacks_is_refused(tmp_path):
    mod = write_module(tmp_path, FACTORY + '''
def fixed(num_classes, in_shape):
    c, h, w = in_shape
    return nn.Sequential(nn.Flatten(), nn.Linear(c * h * w, num_classes))
''')
    cli_error(tmp_path, "curve", "complexity", "--dataset", "digits", "--model", f"{mod}:fixed",
              "--param", "width", "--values", "8,16", "--epochs", "1", *FAST,
              words=("no parameter for width 8", "change nothing"))
    assert not (tmp_path / "runs").exists()  # refused before a run directory was made


def test_random_bytes_as_weights_are_called_damaged_not_code(tmp_path):
    import numpy as np

    from biasvar.models._external import load_weights

    (tmp_path / "garbage.pt").write_bytes(np.random.default_rng(0).bytes(3000))
    model = create_model("mlp", num_classes=10, in_shape=(1, 8, 8), width=16)
    with pytest.raises(ModelError, match="not a PyTorch weights file or is damaged") as e:
        load_weights(model, str(tmp_path / "garbage.pt"))
    assert "holds code" not in str(e.value)

"""Transfer learning: discriminative rates in the optimizer, the backbone file (source layers
kept, head re-initialised), the two stages (the first leaves the backbone untouched), the
adaptation to the source's input size and architecture, and bad weights in one line."""
from __future__ import annotations

import json

import pytest
import torch

from biasvar import ExperimentConfig, cli
from biasvar.config import resolve
from biasvar.data import load_data
from biasvar.train import build_model
from biasvar.train._optim import make_optimizer

pytestmark = pytest.mark.timeout(240)

FLAGS = ["--dataset", "digits", "--model", "cnn", "--width", "4", "--epochs", "2",
         "--threads", "1", "--precision", "fp32", "--channels-last", "off", "--no-progress"]


def test_backbone_lr_gives_the_backbone_a_lower_rate():
    cfg = resolve(ExperimentConfig(dataset="digits", model="cnn", width=4, lr=0.01,
                                   backbone_lr=0.1, weight_decay=1e-4))
    model = build_model(cfg, load_data(cfg))
    opt = make_optimizer(cfg, model)
    head = {id(p) for p in model.head.parameters()}
    for g in opt.param_groups:
        in_head = {id(p) in head for p in g["params"]}
        assert len(in_head) == 1  # no group mixes head and backbone
        assert g["lr"] == pytest.approx(0.01 if in_head == {True} else 0.001)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.01)
    n = sum(p.numel() for g in opt.param_groups for p in g["params"])
    assert n == sum(p.numel() for p in model.parameters())


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A source run on digits at 12 px, width 6 (the target asks for 8 px, width 4)."""
    out = tmp_path_factory.mktemp("ft") / "src"
    assert cli.main(["train", *FLAGS, "--width", "6", "--image-size", "12", "--out", str(out),
                     "--no-report"]) == 0
    return out


@pytest.fixture(scope="module")
def tuned(source, tmp_path_factory):
    out = tmp_path_factory.mktemp("ft") / "run"
    assert cli.main(["finetune", *FLAGS, "--weights", str(source), "--sizes", "40,80",
                     "--seeds", "2", "--head-epochs", "1", "--out", str(out)]) == 0
    return out


def test_finetune_adapts_and_reports(tuned):
    doc = json.loads((tuned / "finetune.json").read_text())
    notes = " ".join(doc["notes"])
    assert "width 4 → 6" in notes and "8 → 12 px" in notes and "head 'head' replaced" in notes
    assert [p["n_train"] for p in doc["points"]] == [40, 80]
    for p in doc["points"]:
        for arm in ("scratch", "finetuned", "head_only"):
            a = p[arm]
            assert len(a["test_errors"]) == 2
            assert a["error"]["value"] == pytest.approx(sum(a["test_errors"]) / 2)
            z = a["zero_one"]
            assert z["loss"]["value"] == pytest.approx(a["error"]["value"], abs=1e-9)
    assert (tuned / "report.html").is_file()


def test_backbone_file_keeps_the_source_and_renews_the_head(source, tuned):
    src = torch.load(source / "last.pt", weights_only=True)["model"]
    bb = torch.load(tuned / "backbone.pt", weights_only=True)
    for k, v in src.items():
        if k.startswith("head."):
            if v.dtype.is_floating_point and v.ndim > 1:
                assert not torch.equal(bb[k], v), k
        else:
            assert torch.equal(bb[k], v), k


def test_first_stage_trains_the_head_only(tuned):
    bb = torch.load(tuned / "backbone.pt", weights_only=True)
    stage1 = [d for d in (tuned / "fits").iterdir()
              if json.loads((d / "spec.json").read_text())["config"]["freeze_backbone"]]
    stage2 = [d for d in (tuned / "fits").iterdir()
              if json.loads((d / "spec.json").read_text())["config"]["backbone_lr"] == 0.1]
    assert len(stage1) == 4 and len(stage2) == 4
    for d in stage1:
        w = torch.load(d / "last.pt", weights_only=True)["model"]
        assert all(torch.equal(w[k], v) for k, v in bb.items() if not k.startswith("head."))
        head = [k for k, v in bb.items() if k.startswith("head.") and v.ndim > 1]
        assert head and not any(torch.equal(w[k], bb[k]) for k in head)
    spec = json.loads((stage2[0] / "spec.json").read_text())["config"]
    assert spec["weights"].endswith("last.pt") and not spec["freeze_backbone"]


def test_bad_weights_are_one_line(tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.main(["finetune", *FLAGS, "--weights", str(tmp_path / "nope.pt"),
                     "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "weights" in err and "neither a file nor a torchvision model" in err
    assert "Traceback" not in err
    assert not out.exists()
    torch.save({"conv.weight": torch.zeros(3, 3), "fc.bias": torch.zeros(7)}, tmp_path / "w.pt")
    assert cli.main(["finetune", *FLAGS, "--weights", str(tmp_path / "w.pt"),
                     "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "does not fit this model" in err and len(err.strip().splitlines()) == 1
    assert cli.main(["finetune", *FLAGS, "--out", str(out)]) == 2
    assert "--weights: required" in capsys.readouterr().err


def test_torchvision_names_are_looked_for_in_the_hub_cache(tmp_path, monkeypatch):
    from biasvar.errors import ConfigError
    from biasvar.finetune import hub_weights

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(ConfigError) as e:
        hub_weights("resnet18")
    want = tmp_path / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    assert str(want) in str(e.value) and "download.pytorch.org" in str(e.value)
    want.parent.mkdir(parents=True)
    want.write_bytes(b"")
    assert hub_weights("resnet18") == want

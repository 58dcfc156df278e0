"""Distribution shift: the corruptions (seeded, of growing strength, each checked against what
it must do to the pixels), AdaBN against batch-norm statistics computed here from the layer's
inputs, and ``biasvar shift`` end to end on tiny digits runs (a train run and an ensemble run),
its clean row equal to an independent scoring; bad input in one line."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from biasvar import ExperimentConfig, cli
from biasvar.errors import ConfigError
from biasvar.shift import CORRUPTIONS, adapt_batchnorm, corrupt, shift

pytestmark = pytest.mark.timeout(240)

FLAGS = ["--dataset", "digits", "--model", "mlp", "--width", "16", "--epochs", "2",
         "--threads", "1", "--precision", "fp32", "--channels-last", "off", "--no-progress"]


def _images(n=64, size=28, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.zeros(n, 1, size, size)
    x[:, :, size // 4: 3 * size // 4, size // 4: 3 * size // 4] = 0.8  # a bright square
    x += torch.rand(x.shape, generator=g) * 0.1
    return (x.clamp(0, 1) * 255).round().to(torch.uint8)


@pytest.mark.parametrize("name", sorted(CORRUPTIONS))
def test_corruptions_are_seeded_and_grow_with_severity(name):
    x = _images()
    a, b = corrupt(x, name, 3, seed=0), corrupt(x, name, 3, seed=0)
    assert torch.equal(a, b) and a.dtype == torch.uint8 and a.shape == x.shape
    change = [(corrupt(x, name, s, seed=0).float() - x.float()).abs().mean().item()
              for s in (1, 3, 5)]
    assert 0 < change[0] < change[1] < change[2], change


def test_contrast_and_brightness_do_what_they_say():
    x = _images()
    xf = x.float()
    c1 = corrupt(x, "contrast", 1).float()
    # each image's spread shrinks by the severity's factor (0.6), its mean stays
    ratio = c1.std(dim=(1, 2, 3)) / xf.std(dim=(1, 2, 3))
    assert ratio.numpy() == pytest.approx(np.full(len(x), 0.6), abs=0.02)
    assert c1.mean(dim=(1, 2, 3)).numpy() == pytest.approx(xf.mean(dim=(1, 2, 3)).numpy(),
                                                           abs=0.6)
    b2 = corrupt(x, "brightness", 2).float()
    assert torch.all(b2 >= xf) and (b2 - xf)[xf < 150].mean().item() == pytest.approx(51, abs=1)


def test_occlusion_blacks_out_a_square_and_noise_depends_on_the_seed():
    x = torch.full((8, 1, 20, 20), 200, dtype=torch.uint8)
    o = corrupt(x, "occlusion", 5)  # side 0.6 · 20 = 12
    assert [(img == 0).sum().item() for img in o] == [144] * 8
    assert not torch.equal(corrupt(x, "gaussian_noise", 2, seed=0),
                           corrupt(x, "gaussian_noise", 2, seed=1))


def test_unknown_corruption_and_severity():
    x = _images(4)
    with pytest.raises(ConfigError, match="corruption.*'blurr'.*blur"):
        corrupt(x, "blurr", 1)
    with pytest.raises(ConfigError, match="severity"):
        corrupt(x, "blur", 6)


def test_adabn_sets_the_statistics_of_the_new_images():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.BatchNorm1d(8), nn.ReLU(),
                          nn.Linear(8, 3)).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}

    class D:  # the fields adapt_batchnorm reads
        mean, std = (0.5,), (0.25,)

    x = torch.randint(0, 256, (300, 1, 4, 4), dtype=torch.uint8)
    D.test = type("S", (), {"x": x})()
    adapted = adapt_batchnorm(model, D, batch_size=64)
    # independent: the BN layer's input over all images, from the untouched model
    z = model[1](model[0]((x.float() / 255 - 0.5) / 0.25))
    bn = adapted[2]
    assert bn.running_mean.numpy() == pytest.approx(z.mean(0).detach().numpy(), abs=1e-4)
    assert bn.running_var.numpy() == pytest.approx(z.var(0, unbiased=True).detach().numpy(),
                                                   rel=1e-3)
    for k, v in model.state_dict().items():  # the original is untouched
        assert torch.equal(v, before[k])
    assert torch.equal(adapted[1].weight, model[1].weight)
    with pytest.raises(ConfigError, match="no batch-norm"):
        adapt_batchnorm(nn.Sequential(nn.Flatten(), nn.Linear(16, 3)), D)


@pytest.fixture(scope="module")
def train_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("shift") / "train"
    assert cli.main(["train", *FLAGS, "--out", str(out), "--no-report"]) == 0
    return out


def test_shift_of_a_train_run(train_run, capsys):
    from biasvar.runs import evaluate_run

    r = shift(train_run, corruptions="contrast,occlusion", severities="1,5", adabn=True)
    doc = json.loads((train_run / "shift" / "shift.json").read_text())
    assert [(x["corruption"], x["severity"]) for x in doc["rows"]] == [
        ("none", 0), ("contrast", 1), ("contrast", 5), ("occlusion", 1), ("occlusion", 5)]
    clean = evaluate_run(train_run)["test"]
    assert doc["rows"][0]["error"] == pytest.approx(clean["error"], abs=1e-9)
    assert doc["rows"][0]["cross_entropy"] == pytest.approx(clean["loss"], rel=1e-4)
    assert doc["rows"][2]["error"] > doc["rows"][0]["error"]  # severe contrast hurts
    assert all("adabn" in x for x in doc["rows"])
    assert (train_run / "shift" / "report.html").is_file() and "contrast" in str(r)
    again = shift(train_run, corruptions="contrast,occlusion", severities="1,5", adabn=True)
    assert again.doc["rows"] == doc["rows"]  # seeded: identical


def test_shift_of_an_ensemble_decomposes(tmp_path):
    from biasvar.ensemble import ensemble

    run = tmp_path / "ens"
    e = ensemble(ExperimentConfig(dataset="digits", model="mlp", width=16, epochs=2,
                                  threads=1, precision="fp32", channels_last="off"),
                 members=2, out=run, progress=False, report=False)
    r = shift(run, corruptions=["rotation"], severities=[2], report=False)
    clean = r.doc["rows"][0]
    assert r.doc["models"] == 2 and len(clean["member_errors"]) == 2
    assert clean["ensemble_error"] == pytest.approx(e.doc["measured"]["ensemble_error"]["value"])
    z = clean["zero_one"]
    assert z["loss"] == pytest.approx(z["bias"] + z["net_variance"], abs=1e-12)
    assert z["loss"] == pytest.approx(clean["error"])


@pytest.mark.parametrize("args, field", [
    (["--corruptions", "fog"], "corruption"), (["--severities", "0,7"], "severities"),
    (["--corruptions", ""], "corruptions")])
def test_bad_input_is_one_line(train_run, tmp_path, capsys, args, field):
    out = tmp_path / "s"
    assert cli.main(["shift", str(train_run), *args, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert field in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_adabn_on_a_model_without_batchnorm_is_refused(tmp_path, capsys):
    run = tmp_path / "nobn"
    assert cli.main(["train", *FLAGS, "--no-batchnorm", "--out", str(run), "--no-report"]) == 0
    assert cli.main(["shift", str(run), "--adabn", "--out", str(tmp_path / "s")]) == 2
    assert "batch-norm" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()


def _digit_folder(root, data, names, invert=True, per=6):
    """An image folder of the run's test digits (inverted: a shifted domain), one folder per
    class named by ``names``."""
    from PIL import Image

    for c, name in enumerate(names):
        (root / name).mkdir(parents=True, exist_ok=True)
        rows = (data.test.y == c).nonzero().flatten()[:per]
        for i in rows.tolist():
            a = data.test.x[i, 0].numpy()
            Image.fromarray(255 - a if invert else a).save(root / name / f"{i}.png")


def test_a_second_dataset_with_a_label_map(train_run, tmp_path, capsys):
    from biasvar.config import load_config
    from biasvar.data import load_data as load

    data = load(load_config(train_run / "config.yaml"))
    words = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    _digit_folder(tmp_path / "inv", data, words)
    mapping = ",".join(f"{w}={i}" for i, w in enumerate(words))
    r = shift(train_run, target=f"imagefolder:{tmp_path / 'inv'}", label_map=mapping,
              out=tmp_path / "s", report=True)
    rows = r.doc["rows"]
    assert [x["corruption"] for x in rows] == ["none", f"imagefolder:{tmp_path / 'inv'}"
                                                .join(["target:", ""])]
    assert rows[1]["n"] > 0 and rows[1]["error"] > rows[0]["error"]  # inverted digits: worse
    assert "Another dataset" in (tmp_path / "s" / "report.html").read_text()
    # a class the map leaves out is one line, nothing written
    partial = ",".join(f"{w}={i}" for i, w in enumerate(words[:9]))
    code = cli.main(["shift", str(train_run), "--target", f"imagefolder:{tmp_path / 'inv'}",
                     "--label-map", partial, "--out", str(tmp_path / "s2")])
    err = capsys.readouterr().err
    assert code == 2 and "'nine'" in err and "label_map" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "s2").exists()
    code = cli.main(["shift", str(train_run), "--label-map", "a=b", "--out",
                     str(tmp_path / "s3")])
    assert code == 2 and "--target" in capsys.readouterr().err


def test_few_shot_rows_and_adaptation(train_run):
    from biasvar.shift import few_shot_rows

    y = np.repeat(np.arange(3), 10)
    lab, rest = few_shot_rows(y, 4, seed=0)
    assert np.bincount(y[lab]).tolist() == [4, 4, 4]
    assert sorted(np.concatenate([lab, rest]).tolist()) == list(range(30))
    with pytest.raises(ConfigError, match="few_shot"):
        few_shot_rows(y, 10, seed=0)
    r = shift(train_run, corruptions="contrast", severities="5", few_shot=5, report=True,
              out=train_run / "fs")
    fs = r.doc["rows"][1]["few_shot"]
    assert fs["labelled"] == 50 and fs["labelled"] + fs["scored"] == r.doc["n_test"]
    # training on the shifted images' labels lowers the error on the other shifted images
    assert fs["after"]["error"] < fs["before"]["error"]
    assert "few_shot" not in r.doc["rows"][0]  # not on the clean set
    assert "few-shot" in str(r)


def test_corruptions_none_adapts_to_the_test_set_itself(train_run, capsys):
    """--corruptions none scores the test set as it is; --adabn and --few-shot then adapt to it
    (a user's own test set that is itself the shifted one, as the verdict's shift remedy
    suggests)."""
    code = cli.main(["shift", str(train_run), "--corruptions", "none", "--adabn",
                     "--few-shot", "3", "--device", "cpu", "--out", str(train_run / "own"),
                     "--no-progress"])
    assert code == 0
    doc = json.loads((train_run / "own" / "shift.json").read_text())
    assert doc["corruptions"] == [] and [r["corruption"] for r in doc["rows"]] == ["none"]
    row = doc["rows"][0]
    assert "adabn" in row and row["few_shot"]["labelled"] == 30
    assert doc["device"] == "cpu"
    assert (train_run / "own" / "report.html").is_file()


def test_each_severity_draws_its_own_noise():
    """The corruption is seeded by (corruption, severity, seed): the noise patterns of two
    severities, scaled to one size, are uncorrelated (one seed for every severity would make
    them the same pattern, correlation 1)."""
    x = torch.full((32, 1, 28, 28), 128, dtype=torch.uint8)   # mid-grey: no clipping
    d3 = corrupt(x, "gaussian_noise", 3, seed=0).float() - 128
    d4 = corrupt(x, "gaussian_noise", 4, seed=0).float() - 128
    corr = torch.corrcoef(torch.stack([d3.flatten(), d4.flatten()]))[0, 1].item()
    assert abs(corr) < 0.1, corr
    again = corrupt(x, "gaussian_noise", 3, seed=0).float() - 128
    assert torch.equal(again, d3)

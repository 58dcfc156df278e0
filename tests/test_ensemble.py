"""Ensembles: the combination and the gain against independent computations (scikit-learn's
log loss, torch's log-softmax, the decomposition's CE variance term), fresh members never the
decomposition's models, and ``biasvar ensemble`` end to end on tiny digits fits: one artifact
that ``biasvar evaluate`` scores like a single model, to the same numbers."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from sklearn.metrics import log_loss

from biasvar import ExperimentConfig, cli
from biasvar.analysis._formulas import decompose
from biasvar.analysis.analyses import decomposition_jobs
from biasvar.data import load_data
from biasvar.ensemble import combine_log_probs, ensemble, gain, load_ensemble, member_jobs
from biasvar.errors import BiasvarError, ConfigError

pytestmark = pytest.mark.timeout(240)

FAST = dict(dataset="digits", model="mlp", width=16, epochs=2, threads=1, precision="fp32",
            channels_last="off")
FLAGS = ["--dataset", "digits", "--model", "mlp", "--width", "16", "--epochs", "2",
         "--threads", "1", "--precision", "fp32", "--channels-last", "off", "--no-progress"]


def _random_lp(k=4, m=300, c=5, seed=0):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(k, m, c)) * 2
    y = rng.integers(0, c, size=m)
    logits[:, np.arange(m), y] += 1.5  # better than chance
    return torch.log_softmax(torch.tensor(logits), dim=2).numpy(), y


def test_combine_matches_torch_and_numpy():
    lp, _ = _random_lp()
    want_log = torch.log_softmax(torch.tensor(lp).mean(0), dim=1).numpy()
    assert combine_log_probs(lp, "logprob") == pytest.approx(want_log, abs=1e-10)
    want_prob = np.log(np.exp(lp).mean(0))
    assert combine_log_probs(lp, "prob") == pytest.approx(want_prob, abs=1e-10)
    with pytest.raises(ConfigError, match="combine"):
        combine_log_probs(lp, "median")


@pytest.mark.parametrize("how", ["logprob", "prob"])
def test_gain_against_scikit_learn(how):
    lp, y = _random_lp()
    g = gain(lp, y, how=how, n_boot=200)
    ens = np.exp(combine_log_probs(lp, how))
    members_err = np.mean([(m.argmax(1) != y).mean() for m in lp])
    members_ce = np.mean([log_loss(y, np.exp(m), labels=range(5)) for m in lp])
    assert g["member_error"]["value"] == pytest.approx(members_err)
    assert g["member_ce"]["value"] == pytest.approx(members_ce)
    assert g["ensemble_error"]["value"] == pytest.approx((ens.argmax(1) != y).mean())
    assert g["ensemble_ce"]["value"] == pytest.approx(log_loss(y, ens, labels=range(5)))
    assert g["gain_ce"]["value"] == pytest.approx(members_ce - log_loss(y, ens, labels=range(5)))
    for k in ("member_error", "ensemble_error", "gain_error", "gain_ce"):
        lo, hi = g[k]["ci95"]
        assert lo <= g[k]["value"] <= hi and lo < hi


def test_predicted_ce_gain_is_the_decompositions_variance_term():
    # two independent computations: the paired gain here, the CE variance (mean KL) there
    lp, y = _random_lp(k=5)
    g = gain(lp, y, how="logprob", n_boot=50)
    d = decompose(lp.astype(np.float32), y, n_boot=50)
    assert g["gain_ce"]["value"] == pytest.approx(d["cross_entropy"]["variance"]["value"],
                                                  rel=1e-5)
    assert g["ensemble_ce"]["value"] == pytest.approx(d["cross_entropy"]["bias"]["value"],
                                                      rel=1e-5)


@pytest.mark.parametrize("kind, sampling", [("deep", "seed"), ("bagging", "bootstrap")])
def test_members_are_fresh(kind, sampling):
    cfg = ExperimentConfig(**FAST)
    data = load_data(cfg)
    mem = member_jobs(cfg, data, members=3, kind=kind)
    pred = decomposition_jobs(cfg, data, rounds=3, sampling=sampling)
    assert not {j.key for j in mem} & {j.key for j in pred}
    assert not {j.seed for j in mem} & {j.seed for j in pred}
    assert len({j.seed for j in mem}) == 3
    if kind == "bagging":
        n = len(data.train)
        for j in mem:
            assert len(j.train_indices) == n and len(np.unique(j.train_indices)) < n
        assert not any(np.array_equal(a.train_indices, b.train_indices)
                       for a in mem for b in pred)
    else:
        assert all(j.train_indices is None for j in mem)


@pytest.fixture(scope="module")
def ens_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("ens") / "run"
    r = ensemble(ExperimentConfig(**FAST), members=2, kind="bagging", out=out, progress=False)
    return out, r


def test_ensemble_run_and_its_artifact(ens_run, capsys):
    out, r = ens_run
    doc = json.loads((out / "ensemble.json").read_text())
    assert doc["members"] == 2 and doc["rounds"] == 2 and doc["sampling"] == "bootstrap"
    assert len(doc["member_fits"]) == 2
    for f in doc["member_fits"]:
        assert (out / f["weights"]).is_file()
    # the artifact scored as one model (nn.Module path) gives the numbers measured from the
    # stored log-probabilities (numpy path)
    from biasvar.runs import evaluate_run

    metrics = evaluate_run(out)
    assert metrics["test"]["error"] == pytest.approx(doc["measured"]["ensemble_error"]["value"],
                                                     abs=1e-9)
    assert metrics["test"]["loss"] == pytest.approx(doc["measured"]["ensemble_ce"]["value"],
                                                    rel=1e-4)
    # biasvar.predict takes it like a single model
    from biasvar import predict

    cfg = ExperimentConfig(**FAST)
    data = load_data(cfg)
    lp = predict(load_ensemble(out, data), data, "test")
    assert np.exp(lp).sum(1) == pytest.approx(np.ones(len(lp)), abs=1e-5)
    assert (lp.argmax(1) != data.test.y.numpy()).mean() == pytest.approx(
        doc["measured"]["ensemble_error"]["value"])
    page = (out / "report.html").read_text()
    assert "Predicted vs measured gain" in page and "<svg" in page
    assert "prediction check" in str(r)
    # the gallery is the ensemble's: the test images it gets wrong, most confident first,
    # found here from the members' stored log-probabilities combined by hand (mean log p)
    lps = np.stack([np.load(out / "fits" / f["key"] / "test_log_probs.npy")
                    for f in doc["member_fits"]]).astype(np.float64)
    mean = lps.mean(0)
    ens = mean - np.log(np.exp(mean).sum(1, keepdims=True))
    y = data.test.y.numpy()
    wrong = np.flatnonzero(ens.argmax(1) != y)
    top = wrong[np.argsort(-ens.max(1)[wrong], kind="stable")][:16]
    gallery = json.loads((out / "gallery.json").read_text())
    assert [g["index"] for g in gallery] == top.tolist() and len(top) > 0
    section = page.split('id="mistakes"')[1].split("</section>")[0]
    assert section.count("<figure>") == len(gallery)
    assert [c.split("</b>")[0] for c in section.split('class="p">')[1:]] == \
        [data.classes[int(ens[i].argmax())] for i in top]


def test_rerun_trains_nothing(ens_run, capsys):
    out, r = ens_run
    again = ensemble(ExperimentConfig(**FAST), members=2, kind="bagging", out=out,
                     progress=False)
    assert "4 already stored, 0 to train" in capsys.readouterr().out
    assert again.doc["measured"] == r.doc["measured"]


@pytest.mark.parametrize("args, field", [
    (["--members", "1"], "members"), (["--rounds", "1"], "rounds"),
    (["--combine", "median"], "--combine"), (["--kind", "stacking"], "--kind"),
    (["--combine", "weights"], "combine"), (["--snapshots", "2"], "snapshots"),
    (["--kind", "snapshot", "--rounds", "3"], "rounds"),
    (["--kind", "snapshot", "--members", "3"], "snapshots"),  # 2 epochs < 3 cycles
    (["--kind", "snapshot", "--snapshots", "4"], "snapshots")])
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys, args, field):
    out = tmp_path / "run"
    argparse_refuses = args[1] in ("median", "stacking")  # not a choice of the flag
    with pytest.raises(SystemExit) if argparse_refuses else _no_raise():
        code = cli.main(["ensemble", *FLAGS, *args, "--out", str(out)])
        assert code == 2
    err = capsys.readouterr().err
    assert field in err and "Traceback" not in err
    assert not out.exists()


class _no_raise:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_evaluate_refuses_a_checkpoint_choice_for_an_ensemble(ens_run):
    from biasvar.runs import evaluate_run

    out, _ = ens_run
    with pytest.raises(BiasvarError, match="--checkpoint"):
        evaluate_run(out, checkpoint="best")
    with pytest.raises(BiasvarError, match="ensemble.json"):
        load_ensemble(out.parent)


def test_biasvar_report_renders_each_commands_page(ens_run, capsys):
    # `biasvar report RUN_DIR` picks the page by the file the command wrote
    out, _ = ens_run
    (out / "report.html").unlink()
    assert cli.main(["report", str(out)]) == 0
    assert "Predicted vs measured gain" in (out / "report.html").read_text()


# -- snapshot ensembles and weight averaging ----------------------------------------------------

SNAP = dict(FAST, epochs=4)


def test_cosine_restarts_follow_huang_et_al():
    """The rate at every step against eq. 2 of Huang et al. (2017), written out here:
    α(t) = α0/2 · (cos(π · mod(t, T/M) / (T/M)) + 1) for M equal cycles of T steps."""
    from biasvar.config import resolve
    from biasvar.train import cycle_ends, make_scheduler

    cfg = resolve(ExperimentConfig(**dict(FAST, epochs=6, snapshots=3, lr=0.01)))
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=cfg.lr)
    spe = 7
    sched = make_scheduler(cfg, opt, 6 * spe, spe)
    rates = []
    for _ in range(6 * spe):
        rates.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    per = 6 * spe // 3
    expect = [0.01 / 2 * (np.cos(np.pi * (t % per) / per) + 1) for t in range(6 * spe)]
    assert rates == pytest.approx(expect, abs=1e-12)
    assert cycle_ends(6, 3) == [2, 4, 6] and cycle_ends(7, 3) == [2, 5, 7]


def test_a_snapshot_is_the_model_a_shorter_run_ends_with(tmp_path):
    """Snapshot 1 of a 4-epoch, 2-cycle run is the end of a 2-epoch cosine: a plain 2-epoch fit
    of the same seed (the data order depends on the seed and the epoch only) has its weights;
    the last snapshot is the run's final model; the two snapshots differ."""
    from biasvar import fit
    from biasvar.train import load_checkpoint

    cfg = ExperimentConfig(**dict(SNAP, snapshots=2))
    data = load_data(cfg)
    res = fit(cfg, data, run_dir=tmp_path / "snap", progress=False)
    short = fit(ExperimentConfig(**dict(FAST, epochs=2)), data, progress=False)
    s1 = load_checkpoint(tmp_path / "snap" / "snapshot-1.pt")["model"]
    s2 = load_checkpoint(tmp_path / "snap" / "snapshot-2.pt")["model"]
    for k, v in short.model.state_dict().items():
        assert torch.allclose(s1[k].float(), v.float(), atol=1e-6), k
        assert torch.equal(s2[k], res.model.state_dict()[k]), k
        assert torch.equal(res.snapshots[0][k], s1[k])
    assert any(not torch.equal(s1[k], s2[k]) for k in s1 if s1[k].is_floating_point())


@pytest.fixture(scope="module")
def snap_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("snap") / "run"
    r = ensemble(ExperimentConfig(**dict(SNAP, model="cnn", width=8)), members=2,
                 kind="snapshot", combine="weights", out=out, progress=False)
    return out, r


def test_snapshot_ensemble_and_its_averaged_weights(snap_run):
    from biasvar import predict
    from biasvar.runs import evaluate_run, load_trained
    from biasvar.train import load_checkpoint

    out, r = snap_run
    doc = json.loads((out / "ensemble.json").read_text())
    assert doc["kind"] == "snapshot" and doc["combine"] == "weights"
    assert [f["snapshot"] for f in doc["member_fits"]] == [1, 2]
    assert len({f["key"] for f in doc["member_fits"]}) == 1   # one run, two cycles
    cfg = ExperimentConfig(**dict(SNAP, model="cnn", width=8))
    data = load_data(cfg)
    y = data.test.y.numpy()
    # the members' errors, scored here from the snapshot files
    members = [load_trained(cfg, data, out / f["weights"], "x")[0] for f in doc["member_fits"]]
    errs = [float((predict(m, data, "test").argmax(1) != y).mean()) for m in members]
    assert doc["measured"]["member_errors"] == pytest.approx(errs)
    # swa.pt: every weight the mean of the snapshots' (batch-norm statistics re-estimated)
    swa = load_checkpoint(out / "swa.pt")["model"]
    snaps = [load_checkpoint(out / f["weights"])["model"] for f in doc["member_fits"]]
    for k, v in swa.items():
        if k.endswith(("running_mean", "running_var", "num_batches_tracked")):
            continue
        assert torch.allclose(v, (snaps[0][k] + snaps[1][k]) / 2, atol=1e-6), k
    bn = [k for k in swa if k.endswith("running_mean")]
    assert bn and any(not torch.allclose(swa[k], (snaps[0][k] + snaps[1][k]) / 2) for k in bn)
    # the artifact is that one model: evaluate scores it, as measured
    metrics = evaluate_run(out)
    assert metrics["test"]["error"] == pytest.approx(doc["measured"]["ensemble_error"]["value"])
    assert "weights averaged" in str(r) and "snapshots of another run" in str(r)
    page = (out / "report.html").read_text()
    assert "5 snapshots" not in page and "2 snapshots of a fresh run" in page


def test_snapshot_prediction_comes_from_another_run(snap_run):
    """The predicted gain is the ensemble gain of the snapshots of the run with the
    decomposition's seed, recomputed here from its stored log-probabilities."""
    from biasvar.analysis.jobs import SNAPSHOT_LOG_PROBS

    out, r = snap_run
    doc = r.doc
    key = doc["member_fits"][0]["key"]
    others = [d for d in (out / "fits").iterdir() if d.name != key]
    assert len(others) == 1
    lp = np.load(others[0] / SNAPSHOT_LOG_PROBS)
    y = load_data(ExperimentConfig(**dict(SNAP, model="cnn", width=8))).test.y.numpy()
    ens = combine_log_probs(lp, "logprob")
    member = (lp.argmax(2) != y[None]).mean()
    assert doc["predicted"]["gain_error"]["value"] == pytest.approx(
        member - (ens.argmax(1) != y).mean())
    assert json.loads((others[0] / "spec.json").read_text())["seed"] == 0
    assert doc["member_fits"][0]["seed"] == 1000

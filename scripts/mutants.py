"""``make mutants``: deliberate breakages of the analysis code that the tests must catch.

Each mutant replaces one piece of source text (which must occur exactly once) in a copy of the
project, and runs the tests that should fail on it. Killed = those tests fail; survived = they
pass, which means nothing in the suite pins the behaviour the mutant breaks. Before any mutant,
the same tests run on the unmutated copy and must pass (else a "kill" would mean nothing).

    python scripts/mutants.py [--smoke] [--only NAME[,NAME]] [--list]

``--smoke`` runs the SMOKE subset (CI). Exit status 1 when any mutant survives.
The list is curated: each mutant is a mistake someone could make in the formula, sampling
scheme, budget rule, remedy rule or report label it names, not a random operator flip.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: the CI's smoke subset: mutants whose tests are fast (a formula, a rule, a report label)
SMOKE = ("jackknife-is-plugin-times-r-over-r-1", "verdict-labels-swapped",
         "zero-one-net-variance-unsigned")


@dataclass(frozen=True)
class Mutant:
    name: str
    path: str          # relative to the project root
    old: str           # must occur exactly once in the file
    new: str
    tests: tuple[str, ...]
    breaks: str        # what it breaks, in words


MUTANTS: tuple[Mutant, ...] = (
    Mutant("jackknife-is-plugin-times-r-over-r-1", "src/biasvar/analysis/_formulas.py",
           '        out["variance_jackknife"] = r * variance - (r - 1) * (loo_sum / r)',
           '        out["variance_jackknife"] = variance * r / (r - 1)',
           ("tests/analysis/test_decompose.py",),
           "the cross-entropy variance's jackknife correction replaced by plug-in × R/(R−1)"),
    Mutant("split-parts-identical", "src/biasvar/analysis/analyses.py",
           "            idx = parts[r]\n",
           "            idx = parts[0]\n",
           ("tests/analysis/test_sampling.py",),
           "--sampling split trains every model on the same part"),
    Mutant("learning-curve-epochs-not-held", "src/biasvar/analysis/analyses.py",
           "    if n >= n_ref:\n        return cfg\n    r = resolve(cfg)",
           "    if True:\n        return cfg\n    r = resolve(cfg)",
           ("tests/analysis/test_sampling.py",),
           "learning-curve points on fewer images train fewer steps (the curve varies the "
           "optimisation too)"),
    Mutant("report-swaps-bias-and-net-variance", "src/biasvar/report/_html.py",
           '(("loss", "loss"), ("bias", "bias"),\n'
           '                               ("net_variance", "net variance"),',
           '(("loss", "loss"), ("bias", "net variance"),\n'
           '                               ("net_variance", "bias"),',
           ("tests/report/test_report_values.py",),
           "the report's decomposition table swaps the 0-1 bias and net variance labels"),
    Mutant("complexity-table-terms-swapped", "src/biasvar/report/_html.py",
           "            row += ([pct(d.zero_one.bias.value, 2), pct(d.zero_one.net_variance.value, 2),",
           "            row += ([pct(d.zero_one.net_variance.value, 2), pct(d.zero_one.bias.value, 2),",
           ("tests/report/test_report_values.py",),
           "the complexity table prints each value's net variance under 0-1 bias and the reverse"),
    Mutant("gallery-caption-true-is-predicted", "src/biasvar/report/_html.py",
           "            f'<figcaption>true: <b class=\"t\">{_e(g.get(\"true\", \"?\"))}</b><br>'",
           "            f'<figcaption>true: <b class=\"t\">{_e(g.get(\"pred\", \"?\"))}</b><br>'",
           ("tests/report/test_report_values.py",),
           "the gallery's caption names the predicted class as the true one"),
    Mutant("report-10x-said-2x", "src/biasvar/report/_html.py",
           'f"with 10×: <b>{pct(pl.err_10x, 2)}</b>"',
           'f"with 2×: <b>{pct(pl.err_10x, 2)}</b>"',
           ("tests/report/test_report_values.py",),
           "the report prints the 10× prediction as the 2× one"),
    Mutant("gallery-caption-unescaped", "src/biasvar/report/_html.py",
           """            f'predicted: <b class="p">{_e(g.get("pred", "?"))}</b><br>'""",
           """            f'predicted: <b class="p">{g.get("pred", "?")}</b><br>'""",
           ("tests/report/test_report_values.py",),
           "the gallery's predicted caption is not HTML-escaped"),
    Mutant("snapshot-states-share-storage", "src/biasvar/train/_callbacks.py",
           "                  model={n: v.clone() for n, v in ck[\"model\"].items()})",
           "                  model=ck[\"model\"])",
           ("tests/test_ensemble.py::test_a_snapshot_is_the_model_a_shorter_run_ends_with",
            "tests/train/test_callbacks.py::test_callback"),
           "the in-memory snapshots alias the weights still training (all equal the last)"),
    Mutant("shift-z-one-sided-at-1", "src/biasvar/analysis/_remedies.py",
           "SHIFT_Z = 2.576", "SHIFT_Z = 1.0",
           ("tests/analysis/test_remedies.py",),
           "the distribution-shift flag fires on sampling noise"),
    Mutant("transfer-offered-on-large-data", "src/biasvar/analysis/_remedies.py",
           "SMALL_DATA = 10_000", "SMALL_DATA = 10_000_000",
           ("tests/analysis/test_remedies.py",),
           "fine-tuning is offered on any training set size"),
    Mutant("partial-fits-skip-validation-always", "src/biasvar/analysis/jobs.py",
           "    validate = job.train_indices is None or job.config.early_stopping or "
           "bool(callbacks)",
           "    validate = False",
           ("tests/analysis/test_jobs.py::"
            "test_a_fit_on_part_of_the_rows_skips_per_epoch_validation",),
           "whole-set fits (a run's reference) lose their per-epoch validation history"),
    Mutant("verdict-labels-swapped", "src/biasvar/analysis/_remedies.py",
           '"high_bias" if bias else "high_variance" if var',
           '"high_variance" if bias else "high_bias" if var',
           ("tests/analysis/test_verdict.py",),
           "the verdict calls high bias high variance and the other way round"),
    Mutant("variance-ignores-the-decomposition-share", "src/biasvar/analysis/_remedies.py",
           "        return self.gap_high or self.share_high",
           "        return self.gap_high",
           ("tests/analysis/test_verdict.py",),
           "high variance read from the train-validation gap only, never from the decomposition"),
    Mutant("bootstrap-without-replacement", "src/biasvar/analysis/analyses.py",
           "            idx = rng.integers(0, n, size=n)",
           "            idx = rng.permutation(n)",
           ("tests/analysis/test_sampling.py", "tests/analysis/test_decompose.py"),
           "--sampling bootstrap draws every row once (every model sees the same set)"),
    Mutant("held-steps-floor", "src/biasvar/analysis/analyses.py",
           "    epochs = math.ceil(int(r.epochs) * steps_per_epoch(r, n_ref) / steps_per_epoch(r, n))",
           "    epochs = int(int(r.epochs) * steps_per_epoch(r, n_ref) / steps_per_epoch(r, n))",
           ("tests/analysis/test_sampling.py",),
           "a learning-curve point rounds its epochs down and trains fewer steps than the largest"),
    Mutant("label-noise-can-keep-the-label", "src/biasvar/analysis/jobs.py",
           "    shift = rng.integers(1, num_classes, size=int(flip.sum()))",
           "    shift = rng.integers(0, num_classes, size=int(flip.sum()))",
           ("tests/analysis/test_jobs.py",),
           "label noise 'flips' some labels to themselves (less noise than asked)"),
    Mutant("zero-one-net-variance-unsigned", "src/biasvar/analysis/_formulas.py",
           "    net_variance = np.where(bias > 0, -c * variance, variance)",
           "    net_variance = variance",
           ("tests/analysis/test_decompose.py",),
           "the 0-1 net variance stops subtracting the variance on biased points"),
    Mutant("ensemble-members-are-the-decompositions", "src/biasvar/ensemble.py",
           "MEMBER_SEED = 1000", "MEMBER_SEED = 0",
           ("tests/test_ensemble.py::test_members_are_fresh",),
           "the ensemble's 'fresh' members are the decomposition's own models (a match by "
           "construction)"),
    Mutant("snapshot-cycles-floor", "src/biasvar/train/_optim.py",
           "    return [int(math.floor(k * epochs / snapshots + 0.5)) for k in range(1, snapshots + 1)]",
           "    return [int(k * epochs // snapshots) for k in range(1, snapshots + 1)]",
           ("tests/test_ensemble.py::test_cosine_restarts_follow_huang_et_al",),
           "the snapshot cycles' ends rounded down (uneven cycles)"),
    Mutant("ensemble-remedy-gain-sign", "src/biasvar/analysis/_remedies.py",
           "        return d.zero_one.loss.value - d.ensemble.error",
           "        return d.ensemble.error - d.zero_one.loss.value",
           ("tests/analysis/test_remedies.py",),
           "the ensemble remedy's predicted gain has the wrong sign"),
    Mutant("adabn-variance-biased", "src/biasvar/train/_bn.py",
           '        var = (acc["ss"] / n - mean * mean) * n / max(n - 1, 1)',
           '        var = (acc["ss"] / n - mean * mean)',
           ("tests/test_shift.py::test_adabn_sets_the_statistics_of_the_new_images",),
           "AdaBN stores the biased variance where PyTorch keeps the unbiased one"),
    Mutant("early-stopping-does-not-restore", "src/biasvar/train/_callbacks.py",
           "        if error is None and self.restore_best and self.best_state is not None:",
           "        if False:",
           ("tests/train/test_callbacks.py::test_callback",),
           "early stopping keeps the last weights instead of the best epoch's"),
    Mutant("power-law-2x-read-at-10x", "src/biasvar/analysis/curvefit.py",
           "_model(np.array([1.0, 2.0, 10.0]), amp, b, c)",
           "_model(np.array([1.0, 10.0, 10.0]), amp, b, c)",
           ("tests/analysis/test_curvefit.py",),
           "the learning curve's 2× prediction is the power law read at 10× the data"),
    Mutant("power-law-refuses-nothing", "src/biasvar/analysis/curvefit.py",
           "    if n_sizes < MIN_SIZES:",
           "    if n_sizes < 0:",
           ("tests/analysis/test_curvefit.py",),
           "a power law through 3 sizes (exact, untested) is extrapolated anyway"),
    Mutant("ensemble-logprob-averages-probabilities", "src/biasvar/models/_ensemble.py",
           "        mean = lp.mean(axis=0)",
           "        mean = np.log(np.exp(lp).mean(axis=0))",
           ("tests/test_ensemble.py::test_combine_matches_torch_and_numpy",
            "tests/test_ensemble.py::test_predicted_ce_gain_is_the_decompositions_variance_term"),
           "--combine logprob averages probabilities (not the ensemble the CE decomposition "
           "describes)"),
    Mutant("corruption-ignores-severity", "src/biasvar/shift.py",
           "        int(seed) * 1009 + list(CORRUPTIONS).index(name) * 101 + int(severity))",
           "        int(seed) * 1009 + list(CORRUPTIONS).index(name) * 101)",
           ("tests/test_shift.py",),
           "every severity of a corruption draws the same random numbers"),
    Mutant("backbone-lr-on-the-head", "src/biasvar/train/_optim.py",
           '        extra = {} if in_head or lr is None else {"lr": lr * backbone_lr}',
           '        extra = {} if not in_head or lr is None else {"lr": lr * backbone_lr}',
           ("tests/test_finetune.py",),
           "discriminative fine-tuning slows the new head instead of the backbone"),
    Mutant("ece-bins-off-by-one", "src/biasvar/metrics.py",
           "    idx = np.clip(np.ceil(conf * n_bins).astype(np.int64) - 1, 0, n_bins - 1)",
           "    idx = np.clip(np.floor(conf * n_bins).astype(np.int64), 0, n_bins - 1)",
           ("tests/test_metrics.py",),
           "ECE's bins are [lo, hi) instead of (lo, hi] (a confidence on an edge moves bins)"),
)

_TOP = {".venv", ".git", "runs", "data"}            # the project root's heavy folders only
_ANY = shutil.ignore_patterns("__pycache__", ".pytest_cache", "*.egg-info")


def IGNORE(directory: str, names: list[str]) -> set[str]:
    top = _TOP & set(names) if Path(directory) == ROOT else set()
    return top | set(_ANY(directory, names))


def _pytest(copy: Path, tests: tuple[str, ...], timeout: int) -> tuple[int, float, str]:
    env = {**os.environ, "PYTHONPATH": str(copy / "src"), "PYTHONDONTWRITEBYTECODE": "1"}
    t0 = time.perf_counter()
    try:
        p = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider",
                            "-n", "0", *tests], cwd=copy, env=env, capture_output=True,
                           text=True, timeout=timeout)
        rc, out = p.returncode, p.stdout[-1500:] + p.stderr[-500:]
    except subprocess.TimeoutExpired:
        rc, out = -1, f"timed out after {timeout} s"
    return rc, time.perf_counter() - t0, out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--smoke", action="store_true", help="only the smoke subset: "
                    + ", ".join(SMOKE))
    ap.add_argument("--only", default=None, help="mutant names, comma-separated")
    ap.add_argument("--list", action="store_true", help="list the mutants and exit")
    ap.add_argument("--timeout", type=int, default=900, help="seconds per test run")
    a = ap.parse_args()
    chosen = [m for m in MUTANTS if m.name in SMOKE] if a.smoke else list(MUTANTS)
    if a.only:
        names = {n.strip() for n in a.only.split(",")}
        unknown = names - {m.name for m in MUTANTS}
        if unknown:
            ap.error(f"--only: unknown mutant(s) {', '.join(sorted(unknown))} (--list shows them)")
        chosen = [m for m in MUTANTS if m.name in names]
    if a.list:
        for m in MUTANTS:
            print(f"{m.name:<40} {m.path}: {m.breaks}")
        return 0
    for m in chosen:  # a mutant whose text is gone would be "killed" by a syntax error or not run
        n = (ROOT / m.path).read_text().count(m.old)
        if n != 1:
            print(f"mutant {m.name}: its text occurs {n} times in {m.path} (must be once); "
                  "update scripts/mutants.py", file=sys.stderr)
            return 2
    tmp = Path(tempfile.mkdtemp(prefix="biasvar-mutants-"))
    try:
        copy = tmp / "project"
        shutil.copytree(ROOT, copy, ignore=IGNORE)
        baseline: dict[tuple[str, ...], bool] = {}
        for m in chosen:
            if m.tests not in baseline:
                rc, _, out = _pytest(copy, m.tests, a.timeout)
                baseline[m.tests] = rc == 0
                if rc != 0:
                    print(f"baseline: {' '.join(m.tests)} fail on the unmutated code:\n{out}",
                          file=sys.stderr)
                    return 2
        killed = 0
        print(f"{'mutant':<40} {'result':<9} {'s':>5}  what it breaks")
        for m in chosen:
            target = copy / m.path
            original = target.read_text()
            target.write_text(original.replace(m.old, m.new, 1))
            try:
                rc, dt, _ = _pytest(copy, m.tests, a.timeout)
            finally:
                target.write_text(original)
            result = "killed" if rc != 0 else "SURVIVED"
            killed += rc != 0
            print(f"{m.name:<40} {result:<9} {dt:5.0f}  {m.breaks}", flush=True)
        print(f"{killed} of {len(chosen)} mutants killed")
        return 0 if killed == len(chosen) else 1
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

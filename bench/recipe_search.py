"""How ``--recipe fast`` was chosen: candidate training options on Fashion-MNIST, judged on the
validation split only (the test split is never read here), by validation accuracy against
training time on this machine.

    python bench/recipe_search.py [--smoke] [--only N,M]

Each candidate trains once with biasvar's own ``fit`` (validation after every epoch); a line
per candidate gives the validation accuracy and cumulative seconds after each epoch, and the
whole table goes to ``bench/results/recipe-search-<date>.json``. One-cycle and cosine schedules
end their decay at the last epoch, so a candidate's earlier epochs are not what a shorter run
of it would reach: compare final epochs. The candidates measured so far and what they gave are
in bench/README.md ("The fast recipe"). Slow: about 2 to 4 minutes a candidate on 2 cores.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

#: the candidates (options on top of the dataset's defaults), in the order they were tried
CANDIDATES: list[dict] = [
    dict(model="cnn", width=16, depth=2, epochs=8, batch_size=256, lr=4e-3, schedule="onecycle"),
    dict(model="cnn", width=32, depth=2, epochs=6, batch_size=256, lr=4e-3, schedule="onecycle"),
    dict(model="cnn", width=16, depth=2, epochs=8, batch_size=512, lr=6e-3, schedule="onecycle",
         label_smoothing=0.1),
    dict(model="cnn", width=24, depth=2, epochs=6, batch_size=256, lr=4e-3, schedule="onecycle"),
    # the dataset's defaults (cnn width 16, Adam 2e-3, cosine, batch 128) at the same 8 epochs
    dict(epochs=8),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--smoke", action="store_true", help="600 images, 1 epoch: check it runs")
    ap.add_argument("--only", default="", help="candidate numbers (0-based), comma-separated")
    a = ap.parse_args()
    from biasvar import ExperimentConfig, fit, load_data

    picks = [int(i) for i in a.only.split(",") if i.strip()] or range(len(CANDIDATES))
    rows = []
    for i in picks:
        opts = dict(CANDIDATES[i])
        if a.smoke:
            opts.update(train_subset=600, epochs=1)
        cfg = ExperimentConfig(dataset="fashion-mnist", download=False, **opts)
        data = load_data(cfg)
        t0 = time.perf_counter()
        r = fit(cfg, data, progress=False)
        wall = time.perf_counter() - t0
        secs = [h["seconds"] for h in r.history]
        row = dict(candidate=i, options=opts, wall_s=round(wall, 1),
                   val_accuracy=[round(h["val_accuracy"], 4) for h in r.history],
                   cumulative_s=[round(sum(secs[:k + 1]), 1) for k in range(len(secs))],
                   precision=r.precision.get("precision"),
                   channels_last=r.precision.get("channels_last"))
        rows.append(row)
        print(f"[{i}] {opts}: validation {100 * row['val_accuracy'][-1]:.2f}% after "
              f"{len(secs)} epochs, {wall:.1f} s (per epoch: "
              f"{', '.join(f'{100 * v:.1f}' for v in row['val_accuracy'])})", flush=True)
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    stamp = _dt.datetime.now().strftime("%Y-%m-%d")
    path = out / f"recipe-search-{stamp}{'-smoke' if a.smoke else ''}.json"
    path.write_text(json.dumps({"date": _dt.datetime.now().isoformat(timespec="seconds"),
                                "smoke": a.smoke, "candidates": rows}, indent=2) + "\n")
    print(f"results: {path}")


if __name__ == "__main__":
    main()

"""``make bench``: each speed figure beside the baseline it is measured against, and its goal.

Every figure is a ratio of two runs made by this process (or two processes it starts, for the
whole-process figures), never bare seconds; the seconds are printed for reference and written
with the ratios to ``bench/results/<date>.json``.

Figures 1, 2 and 5 train Fashion-MNIST's default model (the cnn of ``biasvar train`` on it).

1. loop       biasvar's training loop vs a hand-written in-memory loop at the same precision and
              memory layout, same model, data, initial weights and batch order (goal >= 0.95x).
2. pipeline   biasvar's default pipeline vs the textbook torchvision one (per-sample PIL
              transforms in a DataLoader), same model and the same augmentation: a horizontal
              flip and a random crop after 2 pixels of padding (goal >= 4x).
3. peer       the same analysis as the peer stack: ``biasvar decompose`` (R bootstrap models) vs
              skorch's NeuralNetClassifier inside mlxtend's ``bias_variance_decomp``, same
              225k-parameter CNN (bench/peer_models.py), whole-process wall time (goal >= 2x).
              Also ``biasvar curve learning`` vs scikit-learn's ``learning_curve`` over skorch
              (figure peer_curve). Needs ``pip install -e '.[bench]'``; skipped with a message
              without it.
4. rounds     an R-model decomposition vs R separate ``biasvar train`` runs of the same specs
              (seed sampling), whole-process wall time (goal: the decomposition <= 1.05x).
5. steps      achieved GFLOP/s of a training step (forward + backward, counted by
              torch.utils.flop_counter) vs a large square matrix product timed here (the
              ceiling), fp32 and, where the CPU runs it natively, bf16 (printed, no goal).
6. recipe     ``--recipe fast`` (biasvar.recipes) on all of Fashion-MNIST: the training time of
              a fit (precision probe included) and its test accuracy, as the recipe stands for
              92 % (goal <= 60 s) and with ``--width 32 --epochs 12`` for 93 % (goal <= 180 s);
              beside the dataset's default options trained as many epochs as the recipe (the
              baseline). The ratio is the goal's seconds over the time taken (>= 1 meets it),
              printed only when the accuracy is reached.
7. side       K = 5 fits of Fashion-MNIST's default model trained side by side (one batched
              forward and backward pass per step: biasvar.train._side) vs the same 5 fits one
              after another, same seeds, rows and precision (their weights agree within 1e-5:
              tests/train/test_side.py). No goal: the path is worth choosing only where this
              ratio is above 1 (expected on CUDA, not on a CPU whose cores each fit already fills);
              beside it, what the probe of ``--side-by-side auto`` measures in a few steps and
              what it chooses.
8. stream     one epoch over Fashion-MNIST PNG files (20,000 by default; bench_stream.py):
              biasvar streamed from disk (``--stream always``) and decoded into memory, each
              against torchvision's ``ImageFolder`` + ``ToTensor`` + ``Normalize`` in a DataLoader
              with the same workers (images/s; the validation pass taken out). No goal.

    python bench/bench.py [--smoke] [--only loop,pipeline,...] [--images N] [--rounds R]

``--smoke`` runs every figure at toy size (CI checks that the benchmarks run, not their
figures).
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BIASVAR = [sys.executable, "-m", "biasvar.cli"]
PEER_MODEL = "bench/peer_models.py:cnn"

FIGURES = ("loop", "pipeline", "peer", "peer_curve", "rounds", "steps", "recipe", "side",
           "stream")


def _line(name: str, ratio: float | None, goal: str, detail: str) -> str:
    r = "  n/a " if ratio is None else f"{ratio:5.2f}x"
    return f"{name:<10} {r}  goal {goal:<8} {detail}"


def _show(name: str, row: dict[str, Any], goal: str, detail: Any) -> None:
    """Print a figure's line; ``detail(row)`` words it, unless the figure was skipped."""
    if "skipped" in row:
        print(_line(name, None, goal, "skipped: " + row["skipped"]), flush=True)
    else:
        print(_line(name, row["ratio"], goal, detail(row)), flush=True)


def _peers_missing(figure: str) -> dict[str, Any] | None:
    """The skipped row of a peer figure when skorch or mlxtend is not installed, else None."""
    try:
        import mlxtend  # noqa: F401
        import skorch  # noqa: F401
    except ImportError:
        return {"figure": figure, "skipped": "skorch and mlxtend are not installed: "
                "pip install -e '.[bench]'"}
    return None


# -- 1. the training loop against a hand-written one ---------------------------------------------

def _hand_epoch(model: torch.nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor,
                y: torch.Tensor, perm: torch.Tensor, bs: int, scale: torch.Tensor,
                shift: torch.Tensor, precision: str, channels_last: bool) -> None:
    """The loop a PyTorch user writes: the same batches, normalised per batch, same autocast."""
    model.train()
    for s in range(len(perm) // bs):
        idx = perm[s * bs:(s + 1) * bs]
        xb = x[idx].float().mul_(scale).sub_(shift)
        if channels_last:
            xb = xb.contiguous(memory_format=torch.channels_last)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            logits = model(xb)
        loss = F.cross_entropy(logits.float(), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()


def fig_loop(data: Any, epochs: int, precisions: list[str]) -> list[dict[str, Any]]:
    from biasvar import ExperimentConfig
    from biasvar.config import resolve
    from biasvar.train import Trainer
    from biasvar.train._fit import _epoch_seed
    from biasvar.train._runtime import seed_everything

    rows = []
    for p in precisions:
        cfg = resolve(ExperimentConfig(dataset="fashion-mnist", model="cnn", batch_size=128,
                                       epochs=epochs + 1, schedule="constant", precision=p,
                                       channels_last="auto", lr=2e-3))
        trainer = Trainer(cfg, data, seed=0, train_indices=None, run_dir=None, callbacks=[],
                          progress=None, desc="bench")
        cl = bool(trainer.precision["channels_last"])
        seed_everything(0)
        from biasvar.train import build_model

        hand = build_model(cfg, data)
        hand.load_state_dict(trainer.model.state_dict())   # the same initial weights
        if cl:
            hand = hand.to(memory_format=torch.channels_last)
        opt = torch.optim.Adam(hand.parameters(), lr=cfg.lr)
        x, y = data.train.x, data.train.y
        t_bv, t_hand = [], []
        for e in range(epochs + 1):            # epoch 0 warms both up; then alternate
            t0 = time.perf_counter()
            trainer.train_one_epoch()
            trainer.epoch += 1
            t1 = time.perf_counter()
            perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(
                _epoch_seed(0, e)))
            torch.manual_seed(_epoch_seed(0, e))
            _hand_epoch(hand, opt, x, y, perm, trainer.bs, trainer.scale, trainer.shift, p, cl)
            t2 = time.perf_counter()
            if e:
                t_bv.append(t1 - t0)
                t_hand.append(t2 - t1)
        diff = max(float((a.float() - b.float()).abs().max()) for a, b in
                   zip(trainer.model.state_dict().values(), hand.state_dict().values()))
        bv, hd = float(np.median(t_bv)), float(np.median(t_hand))
        rows.append({"figure": "loop", "model": f"cnn width {cfg.width} depth {cfg.depth}",
                     "precision": p, "channels_last": cl,
                     "biasvar_s_per_epoch": bv, "hand_s_per_epoch": hd, "ratio": hd / bv,
                     "goal": 0.95, "max_weight_difference": diff, "images": len(y)})
    return rows


# -- 2. the default pipeline against the textbook torchvision one -------------------------------

def fig_pipeline(data: Any, epochs: int) -> dict[str, Any]:
    from PIL import Image
    from torch.utils.data import DataLoader, Dataset
    from torchvision import transforms

    from biasvar import ExperimentConfig
    from biasvar.config import resolve
    from biasvar.models import create_model
    from biasvar.train import Trainer

    x_u8, y = data.train.x[:, 0].numpy(), data.train.y.numpy()
    mean, std = float(data.mean[0]), float(data.std[0])
    tf = transforms.Compose([transforms.RandomHorizontalFlip(), transforms.RandomCrop(28, padding=2),
                             transforms.ToTensor(), transforms.Normalize((mean,), (std,))])

    class DS(Dataset):
        def __len__(self) -> int:
            return len(y)

        def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
            return tf(Image.fromarray(x_u8[i], mode="L")), int(y[i])

    cfg = resolve(ExperimentConfig(dataset="fashion-mnist", model="cnn", batch_size=128,
                                   epochs=epochs + 1, schedule="constant",
                                   augment="hflip=0.5,crop_padding=2", lr=2e-3))
    torch.manual_seed(0)
    model = create_model("cnn", num_classes=10, in_shape=(1, 28, 28), width=cfg.width,
                         depth=cfg.depth)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    loader = DataLoader(DS(), batch_size=128, shuffle=True, drop_last=True)
    times = []
    for e in range(epochs + 1):
        t0 = time.perf_counter()
        for xb, yb in loader:
            loss = F.cross_entropy(model(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
        if e:
            times.append(time.perf_counter() - t0)
    textbook = float(np.median(times))
    trainer = Trainer(cfg, data, seed=0, train_indices=None, run_dir=None, callbacks=[],
                      progress=None, desc="bench")
    times = []
    for e in range(epochs + 1):
        t0 = time.perf_counter()
        trainer.train_one_epoch()
        trainer.epoch += 1
        if e:
            times.append(time.perf_counter() - t0)
    ours = float(np.median(times))
    return {"figure": "pipeline", "model": f"cnn width {cfg.width} depth {cfg.depth}", "textbook_s_per_epoch": textbook, "biasvar_s_per_epoch": ours,
            "ratio": textbook / ours, "goal": 4.0, "images": len(y),
            "biasvar_precision": trainer.precision["precision"],
            "biasvar_channels_last": bool(trainer.precision["channels_last"])}


# -- 3 and 4: whole processes -------------------------------------------------------------------

def _timed(cmd: list[str], cwd: Path) -> tuple[float, str]:
    env = {**os.environ, "TQDM_DISABLE": "1"}
    t0 = time.perf_counter()
    p = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env)
    dt = time.perf_counter() - t0
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stdout[-2000:]}\n"
                           f"{p.stderr[-2000:]}")
    return dt, p.stdout


def _analysis_flags(images: int, epochs: int) -> list[str]:
    return ["--model", PEER_MODEL, "--epochs", str(epochs), "--lr", "1e-3", "--batch-size",
            "128", "--train-subset", str(images), "--schedule", "constant", "--no-progress"]


def fig_peer(images: int, rounds: int, epochs: int, tmp: Path) -> dict[str, Any]:
    missing = _peers_missing("peer")
    if missing:
        return missing
    peer_s, peer_out = _timed([sys.executable, str(HERE / "peer_decompose.py"), "--train",
                               str(images), "--rounds", str(rounds), "--epochs", str(epochs)],
                              ROOT)
    ours_s, ours_out = _timed([*BIASVAR, "decompose", *_analysis_flags(images, epochs),
                               "--rounds", str(rounds), "--sampling", "bootstrap",
                               "--out", str(tmp / "peer"), "--no-report"], ROOT)
    res = json.loads((tmp / "peer" / "results.json").read_text())
    zo = res["decomposition"]["zero_one"]
    return {"figure": "peer", "peer_s": peer_s, "biasvar_s": ours_s, "ratio": peer_s / ours_s,
            "goal": 2.0, "images": images, "rounds": rounds, "epochs": epochs,
            "peer_output": peer_out.strip().splitlines()[-1],
            "biasvar_zero_one": {k: zo[k]["value"] for k in ("loss", "bias", "net_variance")}}


def fig_peer_curve(images: int, epochs: int, tmp: Path) -> dict[str, Any]:
    """``biasvar curve learning`` vs scikit-learn's ``learning_curve`` over skorch, five sizes,
    one seed / one split. biasvar holds the optimizer steps of every point at those of the
    largest (a learning curve varies the data only), so it trains more: the ratio of steps is
    printed beside the ratio of times."""
    missing = _peers_missing("peer_curve")
    if missing:
        return missing
    sizes = "0.1,0.325,0.55,0.775,1"
    peer_s, peer_out = _timed([sys.executable, str(HERE / "peer_curve.py"), "--train",
                               str(images), "--epochs", str(epochs), "--sizes", sizes], ROOT)
    ours_s, _ = _timed([*BIASVAR, "curve", "learning", *_analysis_flags(images, epochs),
                        "--sizes", sizes, "--seeds", "1", "--out", str(tmp / "curve"),
                        "--no-report"], ROOT)
    fracs = [float(f) for f in sizes.split(",")]
    # steps: sklearn trains each size for `epochs` epochs; biasvar each for the largest's steps
    peer_work, ours_work = sum(fracs), len(fracs) * max(fracs)
    return {"figure": "peer_curve", "peer_s": peer_s, "biasvar_s": ours_s,
            "ratio": peer_s / ours_s, "goal": 2.0, "images": images, "epochs": epochs,
            "training_work_ratio": ours_work / peer_work,
            "peer_output": peer_out.strip().splitlines()[-1]}


def fig_rounds(images: int, rounds: int, epochs: int, tmp: Path) -> dict[str, Any]:
    flags = _analysis_flags(images, epochs)
    ours_s, _ = _timed([*BIASVAR, "decompose", *flags, "--rounds", str(rounds), "--sampling",
                        "seed", "--out", str(tmp / "rounds"), "--no-report"], ROOT)
    sep = 0.0
    for r in range(rounds):
        dt, _ = _timed([*BIASVAR, "train", *flags, "--seed", str(r), "--out",
                        str(tmp / f"train{r}"), "--no-report"], ROOT)
        sep += dt
    return {"figure": "rounds", "decompose_s": ours_s, "separate_trains_s": sep,
            "ratio": ours_s / sep, "goal": 1.05, "rounds": rounds, "images": images}


# -- 5. step efficiency ---------------------------------------------------------------------------

def _gemm_gflops(dtype: torch.dtype, n: int = 2048, reps: int = 5) -> float:
    a = torch.randn(n, n).to(dtype)
    b = torch.randn(n, n).to(dtype)
    a @ b
    t0 = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * n ** 3 * reps / (time.perf_counter() - t0) / 1e9


def fig_steps(precisions: list[str], batch: int = 128) -> list[dict[str, Any]]:
    from torch.utils.flop_counter import FlopCounterMode

    from biasvar import ExperimentConfig
    from biasvar.config import resolve
    from biasvar.models import create_model

    cfg = resolve(ExperimentConfig(dataset="fashion-mnist", model="cnn"))
    rows = []
    for p in precisions:
        torch.manual_seed(0)
        model = create_model("cnn", num_classes=10, in_shape=(1, 28, 28), width=cfg.width,
                             depth=cfg.depth)
        model = model.to(memory_format=torch.channels_last)
        x = torch.randn(batch, 1, 28, 28).contiguous(memory_format=torch.channels_last)
        y = torch.randint(0, 10, (batch,))
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)

        def step() -> None:
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=p == "bf16"):
                loss = F.cross_entropy(model(x).float(), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        with FlopCounterMode(display=False) as fc:
            step()
        flops = fc.get_total_flops()
        for _ in range(2):
            step()
        t0 = time.perf_counter()
        reps = 8
        for _ in range(reps):
            step()
        achieved = flops * reps / (time.perf_counter() - t0) / 1e9
        ceiling = _gemm_gflops(torch.float32 if p == "fp32" else torch.bfloat16)
        rows.append({"figure": "steps", "precision": p, "step_gflops": achieved,
                     "gemm_gflops": ceiling, "ratio": achieved / ceiling,
                     "flops_per_step": flops, "batch": batch})
    return rows


# -- main -------------------------------------------------------------------------------------------

#: figure 6: (name, test accuracy to reach, goal in seconds, options on top of the recipe)
RECIPE_RUNS = (("92%", 0.92, 60.0, {}), ("93%", 0.93, 180.0, {"width": 32, "epochs": 12}))


def _fit_and_score(opts: dict[str, Any], smoke: bool) -> dict[str, Any]:
    """One fit on all of Fashion-MNIST (3000 images, 2 epochs when smoke): seconds, test accuracy."""
    from biasvar import ExperimentConfig, evaluate, fit, load_data

    if smoke:
        opts = {**opts, "train_subset": 3000, "test_subset": 500, "epochs": 2}
    cfg = ExperimentConfig(**{"dataset": "fashion-mnist", "download": False, **opts})
    data = load_data(cfg)
    t0 = time.perf_counter()
    r = fit(cfg, data, progress=False)
    secs = time.perf_counter() - t0
    acc = evaluate(r.model, data, splits=("test",))["test"]["accuracy"]
    return {"seconds": round(secs, 1), "test_accuracy": round(float(acc), 4),
            "epochs": len(r.history), "precision": r.precision.get("precision"),
            "channels_last": bool(r.precision.get("channels_last"))}


def fig_recipe(smoke: bool) -> list[dict[str, Any]]:
    from biasvar import recipe

    rows = []
    for name, target, goal_s, extra in RECIPE_RUNS:
        opts = {**recipe("fast", "fashion-mnist"), **extra}
        got = _fit_and_score(opts, smoke)
        base = _fit_and_score({"epochs": opts["epochs"]}, smoke)  # the defaults, same epochs
        reached = got["test_accuracy"] >= target
        rows.append({"figure": "recipe", "target": name, "goal_s": goal_s, "options": extra,
                     "recipe": got, "defaults": base, "reached": reached,
                     "ratio": round(goal_s / got["seconds"], 3) if reached else None})
    return rows


def fig_side(data: Any, epochs: int, k: int = 5) -> dict[str, Any]:
    from biasvar import ExperimentConfig, fit
    from biasvar.config import resolve
    from biasvar.train._side import fit_side_by_side

    cfg = resolve(ExperimentConfig(dataset="fashion-mnist", epochs=epochs, precision="fp32",
                                   download=False))
    seeds = list(range(k))
    fit(cfg, data, seed=99, progress=False, validate=False)  # warm-up (one-off imports)
    t0 = time.perf_counter()
    for s in seeds:
        fit(cfg, data, seed=s, progress=False, validate=False)
    one_by_one = time.perf_counter() - t0
    t0 = time.perf_counter()
    fit_side_by_side(cfg, data, seeds=seeds, validate=False)
    together = time.perf_counter() - t0
    # what --side-by-side auto decides from its probe, beside the whole fits; in an analysis
    # the fit's own step is timed already (for the time estimate), so it is not counted here
    from biasvar.analysis.jobs import SIDE_BY_SIDE_GAIN, fit_speed, side_by_side_speed

    fit_speed(cfg, data)
    t0 = time.perf_counter()
    probe = side_by_side_speed(cfg, data, k)
    return {"figure": "side", "k": k, "epochs": epochs, "one_by_one_s": round(one_by_one, 2),
            "side_by_side_s": round(together, 2), "ratio": round(one_by_one / together, 3),
            "probe_gain": round(probe.gain, 3), "probe_s": round(time.perf_counter() - t0, 2),
            "auto_chooses": "together" if probe.gain >= SIDE_BY_SIDE_GAIN else "one after another"}


def fig_stream(images: int) -> list[dict[str, Any]]:
    """bench_stream.py's comparison: one epoch over ``images`` Fashion-MNIST PNG files,
    biasvar streamed from disk and decoded into memory, each against torchvision's ImageFolder
    pipeline, the same DataLoader workers."""
    import bench_stream as bs
    from biasvar import ExperimentConfig, load_data
    from biasvar.data import loader_workers

    workers = loader_workers()
    root = Path(tempfile.mkdtemp(prefix="biasvar-bench-stream-")) / "fashion"
    try:
        bs._write_folder(root, images)
        mem = load_data(ExperimentConfig(dataset=f"imagefolder:{root}", val_fraction=0.02,
                                         test_fraction=0.02))
        textbook, n_tb = bs._textbook(root, mem.mean[0], mem.std[0], workers)
        rows = []
        for stream, what in (("always", "streamed from disk"), ("never", "decoded into memory")):
            rate, prec, n_bv = bs._biasvar(root, stream, workers)
            rows.append({"figure": "stream", "pipeline": what, "images_per_s": round(rate, 1),
                         "textbook_images_per_s": round(textbook, 1),
                         "ratio": round(rate / textbook, 3), "workers": workers,
                         "textbook_images": n_tb, "biasvar_images": n_bv,
                         "precision": prec["precision"],
                         "channels_last": prec["channels_last"]})
        return rows
    finally:
        shutil.rmtree(root.parent, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--smoke", action="store_true", help="toy sizes: check that it runs")
    ap.add_argument("--only", default=",".join(FIGURES), help="figures to run, comma-separated")
    ap.add_argument("--images", type=int, default=None,
                    help="training images (default 10000; smoke 600)")
    ap.add_argument("--rounds", type=int, default=None, help="models of figures 3-4 (default 5)")
    ap.add_argument("--out", default=str(HERE / "results"), help="folder of the JSON results")
    a = ap.parse_args()
    only = [f.strip() for f in a.only.split(",") if f.strip()]
    unknown = sorted(set(only) - set(FIGURES))
    if unknown:
        ap.error(f"--only: unknown figure(s) {', '.join(unknown)}; choose from {', '.join(FIGURES)}")
    images = a.images or (600 if a.smoke else 10000)
    rounds = a.rounds or (2 if a.smoke else 5)
    epochs = 1 if a.smoke else 3

    from biasvar import ExperimentConfig, load_data
    from biasvar.train._runtime import native_bf16

    precisions = ["fp32"] + (["bf16"] if native_bf16(torch.device("cpu")) else [])
    data = load_data(ExperimentConfig(dataset="fashion-mnist", train_subset=images,
                                      download=False))
    print(f"biasvar benchmarks: {images} Fashion-MNIST training images, {torch.get_num_threads()} "
          f"threads, torch {torch.__version__}; bf16 "
          f"{'native' if len(precisions) > 1 else 'not native on this CPU (fp32 only)'}",
          flush=True)
    rows: list[dict[str, Any]] = []
    tmp = Path(tempfile.mkdtemp(prefix="biasvar-bench-"))
    try:
        for fig in only:
            t0 = time.perf_counter()
            # each figure: its rows, the name and goal it prints under, and how a row reads
            if fig == "loop":
                got = fig_loop(data, 1 if a.smoke else 3, precisions)
                name, goal = "loop", ">= 0.95x"
                detail = lambda r: (
                    f"{r['precision']}{' + channels_last' if r['channels_last'] else ''}: hand "
                    f"loop {r['hand_s_per_epoch']:.2f} s/epoch, biasvar "
                    f"{r['biasvar_s_per_epoch']:.2f} s/epoch (same batches; weights differ by "
                    f"at most {r['max_weight_difference']:.1e})")
            elif fig == "pipeline":
                got = [fig_pipeline(data, 1 if a.smoke else 2)]
                name, goal = "pipeline", ">= 4x"
                detail = lambda r: (
                    f"flip + crop: textbook torchvision {r['textbook_s_per_epoch']:.2f} s/epoch, "
                    f"biasvar {r['biasvar_s_per_epoch']:.2f} s/epoch ({r['biasvar_precision']}"
                    f"{' + channels_last' if r['biasvar_channels_last'] else ''})")
            elif fig == "peer":
                got = [fig_peer(images, rounds, epochs, tmp)]
                name, goal = "peer", ">= 2x"
                detail = lambda r: (
                    f"R={rounds} bootstrap, {epochs} epochs: skorch + mlxtend {r['peer_s']:.1f} "
                    f"s, biasvar decompose {r['biasvar_s']:.1f} s (whole processes)")
            elif fig == "peer_curve":
                got = [fig_peer_curve(images, epochs, tmp)]
                name, goal = "curve", ">= 2x"
                detail = lambda r: (
                    f"5 sizes, 1 seed: scikit-learn learning_curve over skorch {r['peer_s']:.1f} "
                    f"s, biasvar curve learning {r['biasvar_s']:.1f} s (whole processes; biasvar "
                    f"trains {r['training_work_ratio']:.2f}x the steps: every size as many as "
                    "the largest)")
            elif fig == "rounds":
                got = [fig_rounds(images, rounds, epochs, tmp)]
                name, goal = "rounds", "<= 1.05x"
                detail = lambda r: (
                    f"decompose of R={rounds} seeds {r['decompose_s']:.1f} s vs {rounds} "
                    f"separate train runs {r['separate_trains_s']:.1f} s")
            elif fig == "recipe":
                got = fig_recipe(a.smoke)
                name, goal = "recipe", lambda r: f"<= {r['goal_s']:.0f} s"
                detail = lambda r: (
                    f"{r['target']}: --recipe fast "
                    + "".join(f"--{k} {v} " for k, v in r["options"].items())
                    + f"{100 * r['recipe']['test_accuracy']:.2f}% test in "
                    f"{r['recipe']['seconds']:.1f} s ({r['recipe']['epochs']} epochs"
                    f"{'' if r['reached'] else ', not reached'}); the defaults, same epochs: "
                    f"{100 * r['defaults']['test_accuracy']:.2f}% in "
                    f"{r['defaults']['seconds']:.1f} s")
            elif fig == "side":
                got = [fig_side(data, 1 if a.smoke else 2)]
                name, goal = "side", "(none)"
                detail = lambda r: (
                    f"{r['k']} fits of {r['epochs']} epochs, fp32: one after another "
                    f"{r['one_by_one_s']:.1f} s, side by side {r['side_by_side_s']:.1f} s; "
                    f"the probe of --side-by-side auto measured {r['probe_gain']:.2f}x in "
                    f"{r['probe_s']:.1f} s and chooses {r['auto_chooses']}")
            elif fig == "stream":
                got = fig_stream(images if a.smoke else 2 * images)
                name, goal = "stream", "(none)"
                detail = lambda r: (
                    f"1 epoch over {r['biasvar_images']} PNG files, {r['pipeline']}: "
                    f"{r['images_per_s']:.0f} images/s, textbook torchvision ImageFolder "
                    f"{r['textbook_images_per_s']:.0f} ({r['workers']} DataLoader worker(s); "
                    f"{r['precision']}{' + channels_last' if r['channels_last'] else ''})")
            else:
                got = fig_steps(precisions)
                name, goal = "steps", "(none)"
                detail = lambda r: (
                    f"{r['precision']}: a training step runs at {r['step_gflops']:.1f} GFLOP/s, "
                    f"a 2048^2 matrix product at {r['gemm_gflops']:.1f}")
            for r in got:
                _show(name, r, goal(r) if callable(goal) else goal, detail)
            for r in got:
                r["seconds"] = round(time.perf_counter() - t0, 1)
            rows += got
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    stamp = _dt.datetime.now().strftime("%Y-%m-%d")
    part = "" if set(only) == set(FIGURES) else "-" + "-".join(only)  # never over a full run
    path = out / f"{stamp}{part}{'-smoke' if a.smoke else ''}.json"
    path.write_text(json.dumps({"date": _dt.datetime.now().isoformat(timespec="seconds"),
                                "smoke": a.smoke, "images": images, "rounds": rounds,
                                "threads": torch.get_num_threads(), "torch": torch.__version__,
                                "cpu": _cpu(), "figures": rows}, indent=2) + "\n")
    print(f"results: {path}")


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


if __name__ == "__main__":
    main()

#!/usr/bin/env bash
# The CUDA paths, in one short run on a machine with a GPU (no network needed: digits ships with
# scikit-learn). Usage: scripts/gpu-check.sh [OUT_DIR]. Uses the python3 that holds torch there
# (PYTHON=... to choose) and the package from src/ without installing it.
set -u
PY=${PYTHON:-python3}
OUT=${1:-/tmp/biasvar-gpu}
mkdir -p "$OUT"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 BIASVAR_RUNS="$OUT/runs"
BV="$PY -m biasvar.cli"
status=0
step() { echo; echo "=== $*"; }
run() { "$@" || { echo "FAILED ($?): $*"; status=1; }; }

step "environment"
run $PY -c "import torch; print(torch.__version__, torch.cuda.is_available(), torch.cuda.get_device_name(0))"

step "CUDA-only tests (augmentation on the device, training on CUDA)"
run $PY -m pytest -q -p no:cacheprovider tests/data/test_augment.py tests/train -k "cuda or device" \
    -o addopts="" --timeout 300

step "train on CUDA (precision chosen by timing)"
run $BV train --dataset digits --device cuda --epochs 3 --no-progress --out "$OUT/train"
run $PY -c "import json; e=json.load(open('$OUT/train/env.json')); print('device', e['device'], 'precision', e['precision']['chosen'], e['precision']['timings_ms'])"

step "diagnose on CUDA through the Python API"
run $PY - <<PYEOF
from biasvar import ExperimentConfig, diagnose
d = diagnose(ExperimentConfig(dataset="digits", device="cuda"), out="$OUT/diagnose",
             progress=False)
print(d.verdict.label, d.fits, d.decomposition.zero_one.loss.value)
PYEOF

step "streamed images on CUDA (pinned memory, non-blocking copies)"
run $PY - <<PYEOF
from pathlib import Path
from PIL import Image
from sklearn.datasets import load_digits
d = load_digits()
root = Path("$OUT/digits-png")
for i, (img, y) in enumerate(zip(d.images, d.target)):
    (root / str(y)).mkdir(parents=True, exist_ok=True)
    Image.fromarray((img * 16).clip(0, 255).astype("uint8")).save(root / str(y) / f"{i}.png")
PYEOF
BIASVAR_MEMORY_BUDGET=100000 run $BV train --dataset "imagefolder:$OUT/digits-png" --device cuda \
    --epochs 2 --no-progress --out "$OUT/streamed"
run $PY -c "import json; print(json.load(open('$OUT/streamed/env.json')).get('streamed'))"

step "fits side by side on CUDA: equal to separate fits (fp32), and what --side-by-side auto measures"
run $PY - <<PYEOF
import torch
from biasvar import ExperimentConfig, fit, load_data
from biasvar.config import resolve
from biasvar.train import fit_side_by_side
from biasvar.train._speed import measure_side_by_side
cfg = ExperimentConfig(dataset="digits", device="cuda", epochs=2, batch_size=64,
                       precision="fp32", channels_last="off", model="cnn", width=8, depth=2)
data = load_data(cfg)
together = fit_side_by_side(cfg, data, seeds=[1, 2, 3], validate=False)
worst = 0.0
for s, got in zip([1, 2, 3], together):
    alone = fit(cfg, data, seed=s, progress=False, validate=False).model.state_dict()
    mine = got.model.state_dict()
    worst = max(worst, max((alone[k].float() - mine[k].float()).abs().max().item() for k in alone))
print(f"side by side vs separate, largest weight difference: {worst:.2e}")
assert worst < 1e-3, worst  # rounding: 2e-7 on a CPU; a wrong step: 1e-1
for ds in ("digits", "fashion-mnist"):
    c = resolve(ExperimentConfig(dataset=ds, device="cuda", download=False))
    try:
        d = load_data(c)
    except Exception as e:  # Fashion-MNIST may not be on the GPU machine
        print(ds, "skipped:", e)
        continue
    for k in (2, 5, 8):
        sp = measure_side_by_side(c, d, k)
        print(f"{ds} k={k}: {sp.apart_s * 1e3:.2f} ms apart, {sp.together_s * 1e3:.2f} ms "
              f"together, gain {sp.gain:.2f}x")
PYEOF
run $BV decompose --dataset digits --device cuda --rounds 5 --epochs 3 --no-progress --no-report \
    --out "$OUT/side"
run $PY -c "import json; print(json.load(open('$OUT/side/results.json'))['timing'])"

echo; echo "gpu-check: $([ $status = 0 ] && echo passed || echo FAILED)"
exit $status

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

echo; echo "gpu-check: $([ $status = 0 ] && echo passed || echo FAILED)"
exit $status

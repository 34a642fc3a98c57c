#!/usr/bin/env bash
# The one prepared call for a lent GPU machine (the `device` tool; CI never has a GPU): train the paper profile from a
# portable pack for as many steps as fit, evaluate it on the held-out sets that travel, time its steps. That machine
# has torch, torchvision, scikit-image and safetensors but no facenet-pytorch, dlib or face data: the pack carries the
# faces and the FaceNet weights (`normface pack --profile paper --dataset colour --out .pack`), facenet-pytorch
# travels as a wheel in .whl/ (CONTRIBUTING.md, "Benchmarks and a GPU check"). Carry .pack and .whl.
#   PACK=.pack OUT=$OUT MINUTES=6 TIMING=full bash tools/gpu_train.sh   (PYTHON=.venv/bin/python to run it here)
# writes $OUT/gpu_train.json, gpu_steps.json, held_out.png, losses.png, profile_b32.txt and gpu_train.log; then, here,
# `python tools/collect_gpu.py --train $OUT` copies them into results/measured/.
set -uo pipefail
OUT=${OUT:-_build/gpu}
PACK=${PACK:-.pack}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONHASHSEED=0
if ls .whl/*.whl >/dev/null 2>&1; then
    ${PYTHON:-python3} -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        && export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH} || exit 1
fi
export NORMFACE_CACHE=${NORMFACE_CACHE:-/tmp/normface-cache}
exec > >(tee "$OUT/gpu_train.log") 2>&1
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
${PYTHON:-python3} -c "import torch, sys; print('python', sys.version.split()[0], 'torch', torch.__version__, torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no GPU')"
${PYTHON:-python3} tools/gpu_train.py --pack "$PACK" --out "$OUT" --minutes "${MINUTES:-6}" --timing "${TIMING:-full}" \
    ${DEVICE:+--device "$DEVICE"} ${GPU_TRAIN_ARGS:-}

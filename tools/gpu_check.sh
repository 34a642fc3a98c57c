#!/usr/bin/env bash
# The prepared check for a lent GPU machine (the `device` tool of this workplace; CI never has a GPU): the CUDA
# tests, the warp benchmark and the paper-profile training step on the GPU (streamed data, eager and compiled), as
# one run. That machine has its own Python with torch, torchvision, scikit-image and safetensors but no
# facenet-pytorch, kornia, dlib or ORL faces: facenet-pytorch and kornia travel as wheels in .whl/ (see
# CONTRIBUTING.md, "Benchmarks and a GPU check"); faces are generated and the FaceNet there is randomly initialised,
# which every output says. Each benchmark's JSON goes to a scratch folder; $OUT (default _build/gpu) gets the log
# and gpu.json (tools/collect_gpu.py), which is copied to results/measured/gpu.json for the reproducing chapter.
set -uo pipefail
OUT=${OUT:-_build/gpu}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONHASHSEED=0
if ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        && export PYTHONPATH=/tmp/site || exit 1
fi
export NORMFACE_CACHE=/tmp/normface-cache
exec > >(tee "$OUT/gpu_check.log") 2>&1
rc=0
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
python3 -c "import torch, sys; print('python', sys.version.split()[0], 'torch', torch.__version__, torch.cuda.get_device_name(0))"
echo "== CUDA tests"
python3 -m pytest -q -p no:cacheprovider tests/warp/test_warp.py tests/nets/test_morph.py -k cuda -rs || rc=1
echo "== warp benchmark (GPU, generated faces)"
RUNS=$(mktemp -d)
python3 benchmarks/warp.py --device cuda --faces generated --threads 8 --json "$RUNS/warp_cuda.json" || rc=1
# the paper profile as it trains: rows streamed from an on-disk store by DataLoader workers, encoded on the GPU;
# eager against torch.compile in the same process (--compile both), then float32, more loader workers, in memory
for batch in 32 512; do
    echo "== training step, paper profile, streamed, amp=auto, batch $batch, eager and compiled (GPU, generated faces)"
    python3 benchmarks/train_step.py --device cuda --compile both --batch-size $batch --threads 8 --warmup 3 \
        --steps 15 --json "$RUNS/train_step_auto_b${batch}_compile.json" || rc=1
    echo "== training step, paper profile, streamed, amp=off, batch $batch"
    python3 benchmarks/train_step.py --device cuda --amp off --compile off --batch-size $batch --threads 8 --warmup 3 \
        --steps 15 --json "$RUNS/train_step_off_b$batch.json" || rc=1
done
echo "== training step, paper profile, streamed, batch 512, 8 DataLoader workers"
python3 benchmarks/train_step.py --device cuda --batch-size 512 --data-workers 8 --compile off --threads 8 --warmup 3 --steps 15 \
    --json "$RUNS/train_step_auto_b512_w8.json" || rc=1
echo "== training step, paper profile, in-memory rows, batch 512"
python3 benchmarks/train_step.py --device cuda --batch-size 512 --data memory --compile off --threads 8 --warmup 3 --steps 15 \
    --json "$RUNS/train_step_auto_b512_memory.json" || rc=1
python3 tools/collect_gpu.py "$OUT/gpu.json" "$RUNS" || rc=1
tar czf "$OUT/runs.tgz" -C "$RUNS" .  # each benchmark's own JSON, to merge several calls with collect_gpu.py
exit $rc

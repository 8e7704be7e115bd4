#!/usr/bin/env bash
# One prepared run on a GPU machine: the base config benchmarks/base.yaml (asl-clean, and asl under naive noise 0.2; the
# committed summaries were measured with its 20-epoch version) and
# the training throughput of tresnet_m at 224 px on synthetic batches, one and two networks.
# Usage: bash benchmarks/gpu_check.sh OUTDIR   (needs torch, timm, scikit-learn, pyyaml)
set -euo pipefail
out=${1:?usage: gpu_check.sh OUTDIR}
mkdir -p "$out"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
train() { python3 -m mhss_ray.cli "$@"; }
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  python3 -c "import torch, timm; print('torch', torch.__version__, 'timm', timm.__version__)"
  for method in asl-clean asl; do
    start=$(date +%s)
    train --config benchmarks/base.yaml --out "runs/gpu-$method" --overwrite --set method.name=$method --set runtime.device=cuda
    echo "demo $method wall seconds: $(( $(date +%s) - start ))"
    cp "runs/gpu-$method/summary.json" "$out/demo_${method}_summary.json"
  done
  python3 benchmarks/train_speed.py --set runtime.device=cuda --out "$out/train_speed_demo_gpu.json"
  python3 benchmarks/train_speed.py --synthetic 4096 --epochs 2 --set model.name=tresnet_m --set data.image_size=224 \
    --set data.batch_size=128 --set data.num_workers=12 --set runtime.device=cuda --out "$out/train_speed_tresnet_m_224_gpu.json"
} 2>&1 | tee "$out/gpu_check.log"

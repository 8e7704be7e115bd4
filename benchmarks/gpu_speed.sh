#!/usr/bin/env bash
# Issue "performance at study scale", the GPU rows, prepared for a GPU machine (not yet run: see
# benchmarks/README.md): the dual tresnet_m step at 224 px in bf16 with each lever changed alone, and
# four processes sharing the GPU (four 0.25-GPU trials) against one alone. Synthetic images in memory,
# so that the data pipeline is not what is measured.
# Usage: bash benchmarks/gpu_speed.sh OUTDIR
set -euo pipefail
out=${1:?usage: gpu_speed.sh OUTDIR}
mkdir -p "$out"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
common=(--synthetic 4096 --epochs 2 --set model.name=tresnet_m --set data.image_size=224 --set data.batch_size=128
        --set runtime.device=cuda --set runtime.amp=on)
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  python3 benchmarks/train_speed.py --levers "${common[@]}" --out "$out/train_speed_levers_tresnet_m_224_gpu.json"
  python3 benchmarks/train_speed.py --concurrent 4 "${common[@]}" --out "$out/train_speed_share4_tresnet_m_224_gpu.json"
} 2>&1 | tee "$out/gpu_speed.log"

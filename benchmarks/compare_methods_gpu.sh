#!/usr/bin/env bash
# The method comparison on one GPU machine: one process per (seed, noise), run side by side.
# Usage: bash benchmarks/compare_methods_gpu.sh OUTDIR [--variants ...]; then merge locally with
#   python benchmarks/compare_methods.py --device cuda --results benchmarks/results/methods_gpu.json --merge OUTDIR/m_*.json
set -u
out=${1:?usage: compare_methods_gpu.sh OUTDIR [compare_methods.py options]}
shift
mkdir -p "$out" /tmp/cmp-logs
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 OMP_NUM_THREADS=2
for seed in 0 1 2; do
  for noise in naive-0.4 complex-0.2; do
    python3 benchmarks/compare_methods.py --device cuda --threads 2 --seeds $seed --noises $noise "$@" \
      --results "/tmp/cmp-logs/m_${seed}_${noise}.json" > /tmp/cmp-logs/${seed}_${noise}.log 2>&1 &
  done
done
wait
cp /tmp/cmp-logs/m_*.json "$out"/  # the JSON only: at most 8 files come back
for f in /tmp/cmp-logs/*.log; do echo "### $f"; grep -E '^(==|   ->)|Error|error' "$f"; done > "$out/compare_gpu.log"
cat "$out/compare_gpu.log"

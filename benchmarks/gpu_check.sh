#!/usr/bin/env bash
# The GPU check of lic-train, for the day a GPU is available: one script, under 8 minutes on one GPU.
#
#   bash benchmarks/gpu_check.sh [OUT]        # OUT: where the results go (default gpu-check/)
#
# 1. The test suite's CUDA tests (every test whose name says cuda; skipped without a GPU elsewhere).
# 2. benchmarks/trainer_throughput.py on a mid-size model, mbt2018-mean quality 3, 256x256 patches,
#    batch 16, against CompressAI's own examples/train.py (--cuda), 2,000 images.
# 3. torch.cuda.max_memory_allocated (summary.json's peak_memory_bytes) of 60 steps of the same
#    model with Adam, Adam + SMA, and Adam + STDET + SMA (embedding from step 15, up to its cap:
#    the packed optimizer state and the tensors that left autograd are what it measures).
# Needs the train and test extras installed (pip install -e ".[test,train]").
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-${OUT:-gpu-check}}"
mkdir -p "$OUT"
python - <<'PY'
import torch, sys
if not torch.cuda.is_available():
    sys.exit("gpu_check: no CUDA device is available")
print("GPU:", torch.cuda.get_device_name(0), "torch", torch.__version__)
PY

echo "== 1. CUDA tests"
timeout 150 pytest -q -rs -p no:cacheprovider -k cuda tests/test_lic_train 2>&1 | tee "$OUT/cuda_tests.txt" | tail -5

echo "== 2. Throughput against CompressAI's train.py"
WORK="${TMPDIR:-/tmp}/lic_gpu_check"
timeout 240 python benchmarks/trainer_throughput.py --device cuda -m mbt2018-mean \
  --patch-size 256 256 --batch-size 16 -n 8 --images 2000 --steps 30 --repeats 2 \
  --work "$WORK" --out "$OUT/throughput" | tee "$OUT/throughput.txt" | tail -12

echo "== 3. GPU memory: Adam, Adam + SMA, Adam + STDET + SMA"
DATA=$(ls -d "$WORK"/data/*-2000 | head -1)
COMMON=(-m mbt2018-mean -q 3 --data "$DATA/train" --test-data "$DATA/test" --patch-size 256 256
        --batch-size 16 --test-batch-size 16 -n 8 --steps 60 --validate-every 60 --device cuda)
for method in adam sma stdet+sma; do
  flags=()
  [[ $method == *sma* ]] && flags+=(--sma)
  # STDET's warm-up shortened so that it embeds up to its cap within the 60 steps.
  [[ $method == stdet* ]] && flags+=(--stdet --stdet-snapshot-every 2 --stdet-snapshots 5
                                     --stdet-every 5 --stdet-fraction 0.2)
  rm -rf "$WORK/memory-$method"
  timeout 60 lic-train fit "${COMMON[@]}" "${flags[@]}" --out "$WORK/memory-$method" > /dev/null
  cp "$WORK/memory-$method/summary.json" "$OUT/memory-$method.json"
done
python - "$OUT" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
rows = {m: json.loads((out / f"memory-{m}.json").read_text()) for m in ("adam", "sma", "stdet+sma")}
adam = rows["adam"]["peak_memory_bytes"]
lines = ["| method | max_memory_allocated (MB) | vs Adam | s/step (training) | trainable |",
         "|---|---|---|---|---|"]
for method, s in rows.items():
    peak = s["peak_memory_bytes"]
    lines.append(f"| {method} | {peak / 2**20:.0f} | {peak / adam:.2f} | "
                 f"{s['train_seconds_per_step']:.4f} | {s['trainable_fraction']:.2f} |")
text = "\n".join(lines)
(out / "memory.md").write_text(text + "\n")
print(text)
PY
echo "gpu_check: results in $OUT"

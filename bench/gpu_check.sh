#!/usr/bin/env bash
# GPU check, prepared for a lent GPU (about 6-8 minutes on one H100/H200):
#   1. step cost and memory per method, float32 and bfloat16 weights (bench/torch_step_cost.py: the
#      6x768 MLP and SmolLM2-135M; on CUDA memory is torch.cuda.max_memory_allocated);
#   2. 200 SST-2 steps (k = 512, seed 13) of `dfo finetune` with its default method, all 872 test sentences.
# Results go to $OUT (default runs/gpu_check): step_cost.md, sst2/ and sst2.json.
#
#   bash bench/gpu_check.sh            # on the GPU machine
#   bash bench/gpu_check.sh --smoke    # the same steps in a tiny CPU mode (aidreams260K, 2 pairs, 4 steps):
#                                      # checks that the script runs where no GPU is lent
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/gpu_check}
DATA=${DFO_DATA:-../shared/data}
mkdir -p "$OUT"
if [[ "${1:-}" == "--smoke" ]]; then
  DEV=cpu; PAIRS=2; LLM=$DATA/models/aidreams260K; STEPS=4; DTYPES="float32 bfloat16"; THREADS=1; T=600
  METHODS="mezo fzoo mezo-ls"; LLM_METHODS="mezo fzoo"; EXTRA="--test-size 16 --dev-size 16"
else
  DEV=cuda; PAIRS=5; LLM=smollm2; STEPS=200; DTYPES="float32 bfloat16"; THREADS=$(nproc); T=1
  METHODS="mezo subzero lozo lozo-m mezo-orth mezo-ls fzoo fzoo-ls"; LLM_METHODS="mezo subzero mezo-ls fzoo"
  EXTRA="--dev-size 128"
  python -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 'gpu_check: no CUDA device (use --smoke on CPU)')"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
fi
T0=$SECONDS
for dt in $DTYPES; do
  timeout $((T > 1 ? T : 150)) python bench/torch_step_cost.py --model mlp --batch 64 --pairs "$PAIRS" --device "$DEV" \
    --dtype "$dt" --threads "$THREADS" --methods $METHODS --data-dir "$DATA" --out "$OUT/step_cost.md"
  timeout $((T > 1 ? T : 200)) python bench/torch_step_cost.py --model "$LLM" --batch 16 --pairs "$PAIRS" --device "$DEV" \
    --dtype "$dt" --threads "$THREADS" --methods $LLM_METHODS --data-dir "$DATA" --out "$OUT/step_cost.md"
done
echo "step cost: $((SECONDS - T0)) s" | tee -a "$OUT/times.txt"
T1=$SECONDS
timeout $((T > 1 ? T : 240)) python -m dfo finetune --model "$LLM" --data-dir "$DATA" --template review --k 512 --data-seed 13 \
  --seed 13 --steps "$STEPS" --device "$DEV" --threads "$THREADS" $EXTRA --out "$OUT/sst2" --overwrite --no-progress --no-save-model \
  > "$OUT/sst2.json"
echo "sst2 $STEPS steps: $((SECONDS - T1)) s" | tee -a "$OUT/times.txt"
python - "$OUT/sst2.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print(f"sst2: method {r['method']}, {r['steps']} steps, {r['forward_passes']} forward passes, "
      f"test {r['test_accuracy']:.3f} (n={r['test_size']}), train {r['train_seconds']:.0f} s")
PY

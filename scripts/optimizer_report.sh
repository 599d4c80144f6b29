#!/usr/bin/env bash
# Builds the model zoo (python/kiln_models/zoo.py) into models/zoo/ and runs `kiln build --report --check`
# on each: the per-pass report, the layer counts (last line `layers: BEFORE -> AFTER`), and a comparison of
# the optimized graph's outputs with the original's (reference kernels, random inputs).
#   KILN=path/to/kiln  BERT_LAYERS=12  SIZE=224  scripts/optimizer_report.sh [model...]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
kiln="${KILN:-$root/build/kiln}"
python="${PYTHON:-$root/.venv/bin/python}"
out="$root/models/zoo"
models=("$@")
[ ${#models[@]} -eq 0 ] && models=(resnet50 googlenet densenet121 mobilenet_v2 efficientnet_b0 bert)
PYTHONPATH="$root/python" "$python" -m kiln_models.zoo "$out" --models "$(IFS=,; echo "${models[*]}")" \
  --bert-layers "${BERT_LAYERS:-12}" --size "${SIZE:-224}"
summary=""
for m in "${models[@]}"; do
  echo "=== $m"
  "$kiln" build "$out/$m.onnx" --report --check | tee "$out/$m.report.txt"
  summary+="$(printf '%-16s %s' "$m" "$(tail -n 1 "$out/$m.report.txt")")"$'\n'
done
echo "=== summary"
printf '%s' "$summary"

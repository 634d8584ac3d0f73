#!/usr/bin/env bash
# Run bench/speed.py on the lent GPU machine with the bundle from bench/gpu_bundle.py
# (device tool: run(carry=[".gpu_bundle"], command="bash bench/gpu_speed.sh")).
# That machine's python3 has CUDA torch and transformers but no registry: the bundle's wheels
# go into a temporary folder, its MiniLM stand-in onto PYTHONPATH. Results land in $OUT
# (the tool brings them back); extra arguments go to bench/speed.py, or to the script $BENCH
# names (BENCH=bench/transfer_scale.py).
set -euo pipefail
cd "$(dirname "$0")/.."
B=.gpu_bundle
[ -d "$B/pkg" ] || { echo "no $B: run python bench/gpu_bundle.py here and carry it" >&2; exit 2; }
OUT=${OUT:-/tmp/lelp_gpu_out}
mkdir -p "$OUT"
SITE=$(mktemp -d)
if ls "$B"/wheels/*.whl >/dev/null 2>&1; then
  python3 -m pip install --quiet --no-index --no-deps --target "$SITE" "$B"/wheels/*.whl
fi
export PYTHONPATH="$SITE:$PWD/$B/pkg:$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
[ -d "$B/sst2" ] && export LELP_SST2="$PWD/$B/sst2"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt" || true
if [ -n "${BENCH:-}" ]; then  # another benchmark script (bench/transfer_scale.py), same setup
  python3 "$BENCH" --out "$OUT" "$@" 2>&1 | tee "$OUT/log.txt"
  exit "${PIPESTATUS[0]}"
fi
# The LELP 1.6M and product-command sections are CPU work measured here: skipped.
python3 bench/speed.py --skip-lelp --skip-product --out "$OUT" "$@" 2>&1 | tee "$OUT/log.txt"

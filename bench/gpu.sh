#!/usr/bin/env bash
# The benchmark at full size on one GPU: bge-m3-sized (24 layers x 1024, 16 heads, 4096
# intermediate, 250002-piece vocabulary) and bge-reranker-v2-m3-sized random-weight models,
# fp16, ~512-token texts. Reports dense/hybrid tokens/s, rerank pairs/s, the p50 of one short
# query on an idle server, and the fp16-vs-fp32 cosine of the served outputs (target >= 0.999).
#
#   bash bench/gpu.sh                 # on the GPU machine (no internet needed)
#   bash bench/gpu.sh --tiny          # dry run on CPU with tiny models (~2 minutes)
#   bash bench/gpu.sh --duration 20   # any further flag goes to python -m bench.run
#
# Needs: this repository and a Python 3.11 venv with CUDA torch 2.13.0 and the project
# installed (see docs/benchmarks.md, "GPU"), found as $VENV (default .venv) or $PYTHON.
# Models are built once into bench/.cache/ (a few minutes on CPU, ~4.5 GB on disk). The peer
# (Infinity) is left out unless PEER=1 and bench/.peer-venv exists with a CUDA torch.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
python="${PYTHON:-${VENV:-$repo/.venv}/bin/python}"
if [[ ! -x "$python" ]]; then
  echo "error: no python at $python (set VENV or PYTHON)" >&2
  exit 2
fi

tiny=0
args=()
for arg in "$@"; do
  if [[ "$arg" == "--tiny" ]]; then tiny=1; else args+=("$arg"); fi
done

modes="limit,library,ours"
if [[ "${PEER:-0}" == "1" ]]; then modes="$modes,peer"; fi
stamp="$(date +%Y%m%d-%H%M%S)"

if [[ "$tiny" == "1" ]]; then
  out="bench/results/gpu-tiny-$stamp"
  run=(--tiny --device cpu --no-fp16 --no-peer-install)
else
  "$python" - <<'EOF'
import sys
import torch
if not torch.cuda.is_available():
    sys.exit(f"error: torch {torch.__version__} sees no CUDA device (use --tiny for a CPU dry run)")
print(f"GPU: {torch.cuda.get_device_name(0)}, torch {torch.__version__}")
EOF
  out="bench/results/gpu-$stamp"
  run=(--shape full --device cuda --fp16 --no-peer-install --duration 15
       --long-texts-per-request 4 "--sweep=1,4,16,32,64" --sweep-workload dense-long
       --idle-requests 100)
fi

export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
"$python" -m bench.run "${run[@]}" --modes "$modes" \
  --workloads dense-short,dense-long,hybrid-long,colbert-long,rerank-short,rerank-long \
  --fidelity --out "$out" --plots-dir "$out" "${args[@]}"
"$python" -m bench.summary "$out/results.json"

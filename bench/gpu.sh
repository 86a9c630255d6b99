#!/usr/bin/env bash
# The GPU benchmark kit: one command on an offline GPU machine, ~6 minutes, one verdict line per
# target. Full-size random-weight models (bge-m3: 24 layers x 1024, 16 heads, 4096 intermediate,
# 250002-piece vocabulary; bge-reranker-v2-m3 alike), fp16, ~512-token texts; cells: limit (the
# bare forward, batches of 16384 tokens as the server's) and ours (the server over HTTP) on
# dense-long, hybrid-long and rerank-long, the idle p50 of one short query, and the fp16-vs-fp32
# cosine of the served dense and ColBERT vectors (bench/fidelity.py).
#
#   bash bench/gpu.sh OUT_DIR [--tiny] [--compile] [--variant V]... [--wheelhouse DIR]
#                    [--system-site DIR] [bench.run flags]
#
#   OUT_DIR          where results.json, results.md, verdicts.txt and the logs go
#   --tiny           dry run on CPU with tiny models (checks the kit end to end, ~2 minutes)
#   --compile        also serve with --torch_compile (contender ours@compile beside ours,
#                    COMPARE lines in the verdicts; ~3 more minutes: a server, its compile)
#   --variant V      also serve ours@V (repeatable): compile, pipeline0 (no pipeline),
#                    pipeline3, ...; ~2 more minutes each
#   --wheelhouse D   wheels from hack/gpu-wheelhouse.sh (default: wheelhouse/ in the checkout)
#   --system-site D  for a dry run whose "system" Python is itself a venv: its site-packages,
#                    added to the kit's venv as --system-site-packages would add the system's
#
# Python: $PYTHON if set (used as it is), else the venv $KIT_VENV (default .gpu-venv in the
# checkout), created on first use with `$BASE_PYTHON -m venv --system-site-packages` (default
# python3: the system's CUDA torch, transformers, ... stay visible) and filled offline with
# `pip install --no-index --no-deps` from the wheelhouse. The checkout itself is put on
# PYTHONPATH (no install, no build backend needed). Models are built once into bench/.cache/.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

usage() { sed -n '9,21p' "${BASH_SOURCE[0]}" >&2; exit 2; }
[[ $# -ge 1 && "$1" != -* ]] || usage
out="$1"
shift
tiny=0
modes_extra=""
wheelhouse="$repo/wheelhouse"
system_site=""
args=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --tiny) tiny=1; shift ;;
    --compile) modes_extra+=",ours@compile"; shift ;;
    --variant) modes_extra+=",ours@$2"; shift 2 ;;
    --wheelhouse) wheelhouse="$2"; shift 2 ;;
    --system-site) system_site="$2"; shift 2 ;;
    *) args+=("$1"); shift ;;
  esac
done
mkdir -p "$out"
out="$(cd "$out" && pwd)"
started=$(date +%s)

python="${PYTHON:-}"
if [[ -z "$python" ]]; then
  venv="${KIT_VENV:-$repo/.gpu-venv}"
  if [[ ! -x "$venv/bin/python" ]]; then
    if [[ ! -f "$wheelhouse/requirements.txt" ]]; then
      echo "error: no wheelhouse at $wheelhouse (build it with hack/gpu-wheelhouse.sh)" >&2
      exit 2
    fi
    base="${BASE_PYTHON:-python3}"
    echo "kit: creating $venv over $("$base" -c 'import sys; print(sys.prefix)')"
    # A Python without ensurepip (Debian's without python3-venv) still makes a venv without pip.
    "$base" -m venv --system-site-packages "$venv" 2>/dev/null \
      || { rm -rf "$venv"; "$base" -m venv --system-site-packages --without-pip "$venv"; }
    site="$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
    if [[ -n "$system_site" ]]; then
      (cd "$system_site" && pwd) > "$site/_kit_system_site.pth"
    fi
    pip_args=(install --quiet --disable-pip-version-check --no-index --no-deps
              --find-links "$wheelhouse" -r "$wheelhouse/requirements.txt")
    if "$venv/bin/python" -m pip --version >/dev/null 2>&1; then
      "$venv/bin/python" -m pip "${pip_args[@]}"
    elif "$base" -m pip --version >/dev/null 2>&1; then
      "$base" -m pip --python "$venv/bin/python" "${pip_args[@]}"
    else  # no pip at all: these wheels need no build step, unpacking them installs them
      echo "kit: no pip; unpacking the wheels into $site"
      for wheel in "$wheelhouse"/*.whl; do "$venv/bin/python" -m zipfile -e "$wheel" "$site"; done
    fi
  fi
  python="$venv/bin/python"
fi
export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false

"$python" - "$tiny" <<'EOF'
import importlib.metadata
import sys

import kserve  # noqa: F401  (the wheelhouse's)
import torch
import transformers

import predictor.cli  # noqa: F401  (the checkout's server imports)

print(f"kit: python {sys.version.split()[0]}, torch {torch.__version__}, "
      f"transformers {transformers.__version__}, kserve {importlib.metadata.version('kserve')}")
if sys.argv[1] == "0":
    if not torch.cuda.is_available():
        sys.exit("error: torch sees no CUDA device (use --tiny for a CPU dry run)")
    print(f"kit: GPU {torch.cuda.get_device_name(0)}")
EOF

modes="limit,ours$modes_extra"
workloads="dense-long,hybrid-long,rerank-long"
common=(--modes "$modes" --workloads "$workloads" --sweep=
        --no-peer-install --fidelity --out "$out" --plots-dir "$out")
if [[ "$tiny" == "1" ]]; then
  run=(--tiny --device cpu --no-fp16 --clients 4)
else
  run=(--shape full --device cuda --fp16 --duration 10 --clients 32
       --long-texts-per-request 4 --idle-requests 100)
fi
"$python" -m bench.run "${run[@]}" "${common[@]}" "${args[@]}" 2>&1 | tee "$out/run.log"
# How the server ran: packed batches or not, varlen attention or the loop, warm-up, load times.
for log in "$out"/ours*.log; do
  grep -hE "packed batches|varlen_attn failed|warmed up|loaded from" "$log" \
    | sed "s/^/kit: server $(basename "$log" .log): /" || true
done
"$python" -m bench.verdict "$out/results.json" | tee "$out/verdicts.txt"
echo "kit: done in $(( $(date +%s) - started )) s; results in $out"

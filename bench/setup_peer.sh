#!/usr/bin/env bash
# Create bench/.peer-venv with Infinity (infinity-emb), the peer server of the benchmark.
# Its own virtualenv because infinity-emb needs numpy<2, transformers<5 and
# sentence-transformers<4, which the predictor's venv does not have. torch stays 2.13.0
# (peer-constraints.txt), so a pip resolve never pulls a CUDA torch.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="${PEER_VENV:-$here/.peer-venv}"
python="${PYTHON:-python3.11}"
if [[ ! -x "$venv/bin/python" ]]; then
  "$python" -m venv "$venv"
fi
"$venv/bin/pip" install --quiet -c "$here/peer-constraints.txt" "infinity-emb[server,torch]"
"$venv/bin/infinity_emb" --help >/dev/null
echo "peer venv ready: $venv"

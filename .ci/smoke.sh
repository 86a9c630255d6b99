#!/usr/bin/env bash
# Smoke test of one Python: a fresh venv, torch pinned alone, `pip install .` WITHOUT
# constraints.txt (so pyproject.toml's declared ranges are what resolves), then
# `python -m predictor --demo` must answer an embeddings and a rerank request and exit 0 on
# SIGTERM. Usage: bash .ci/smoke.sh python3.12 (SMOKE_VENV=DIR: serve from that venv instead).
# On Python 3.11 pip may find a local CPU torch wheel; elsewhere PyPI's torch is the CUDA build
# (several GB, runs on CPU), which is why CI smokes the other Pythons instead of running the
# whole suite on them.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${1:?usage: smoke.sh PYTHON}"
TORCH_SPEC="${TORCH_SPEC:-torch==2.13.0}"
REPO="$PWD"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/bge-smoke.XXXXXX")"
SERVER_PID=""
cleanup() {
    if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then kill -9 "$SERVER_PID"; fi
    rm -rf "$WORK"
}
trap cleanup EXIT

started=$SECONDS
if [ -n "${SMOKE_VENV:-}" ]; then  # a venv installed earlier the same way (local reruns)
    PY="$SMOKE_VENV/bin/python"
else
    "$PYTHON" -m venv "$WORK/venv"
    PY="$WORK/venv/bin/python"
    # (this machine's pip config names index folders that may be absent: drop those warnings)
    "$PY" -m pip install -q "$TORCH_SPEC" "$REPO" 2>&1 \
        | { grep -v "^WARNING: Location '.*' is ignored" || true; }
fi
echo "smoke $PYTHON: installed in $((SECONDS - started)) s:" \
    "$("$PY" -c 'import sys, torch, transformers, FlagEmbedding  # noqa
from importlib.metadata import version
print(f"Python {sys.version.split()[0]}, torch {torch.__version__},",
      f"transformers {transformers.__version__}, kserve", version("kserve"))')"

PORT="$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
GRPC_PORT="$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
# From an empty folder: the installed package, not this checkout, is what runs.
cd "$WORK"
HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false BGE_PREDICTOR_CACHE="$WORK/cache" \
    "$PY" -m predictor --demo --device cpu --http_port "$PORT" --grpc_port "$GRPC_PORT" \
    >"$WORK/server.log" 2>&1 &
SERVER_PID=$!

"$PY" - "$PORT" "$SERVER_PID" <<'PYEOF' || { tail -n 60 "$WORK/server.log" >&2; exit 1; }
import json, os, sys, time, urllib.error, urllib.request

port, pid = sys.argv[1], int(sys.argv[2])
base = f"http://127.0.0.1:{port}"


def call(path, body=None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(base + path, data=data,
                                     headers={"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as response:
        return response.status, json.loads(response.read())


deadline = time.monotonic() + 900
while True:
    try:
        if all(call(f"/v2/models/{m}/ready")[0] == 200 for m in ("bge-m3", "bge-reranker")):
            break
    except (urllib.error.URLError, ConnectionError, OSError):
        pass
    os.kill(pid, 0)  # raises once the server has died
    if time.monotonic() > deadline:
        sys.exit("server not ready in time")
    time.sleep(1)
status, body = call("/v1/embeddings", {"input": ["hello", "world"]})
assert status == 200 and len(body["data"]) == 2 and body["data"][0]["embedding"], body
status, body = call("/v1/rerank", {"query": "q", "documents": ["a", "b"], "top_n": 3})
assert status == 200 and len(body["results"]) == 2, body
print("smoke: --demo answered /v1/embeddings and /v1/rerank")
PYEOF

kill -TERM "$SERVER_PID"
code=0
wait "$SERVER_PID" || code=$?
SERVER_PID=""
if [ "$code" -ne 0 ]; then
    echo "smoke $PYTHON: server exited $code on SIGTERM" >&2
    tail -n 60 "$WORK/server.log" >&2
    exit 1
fi
grep -E "memory allocator|serving |listening:|auth:" "$WORK/server.log" || true
echo "smoke $PYTHON: passed in $((SECONDS - started)) s"

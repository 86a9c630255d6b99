#!/usr/bin/env bash
# Build, on a machine with PyPI access, the wheels the offline GPU machine lacks
# (hack/gpu-wheelhouse.txt), for its Python (default 3.12) on manylinux x86_64, each pinned to
# the version installed in the project's venv. bench/gpu.sh installs them there offline.
#
#   bash hack/gpu-wheelhouse.sh                          # -> wheelhouse/ for cp312
#   bash hack/gpu-wheelhouse.sh --python-version 3.11 --out /tmp/wh   # the CPU dry run's
#
# PYTHON: the venv whose versions pin the list (default .venv/bin/python, else python3).
# Writes the wheels, requirements.txt (the pins) and prints what it all weighs: it must fit,
# with the repository, in the 64 MiB that can be carried to the GPU machine.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
py_version="3.12"
out="$repo/wheelhouse"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --python-version) py_version="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    -h|--help) sed -n '2,11p' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) echo "error: unknown argument $1" >&2; exit 2 ;;
  esac
done
if [[ ! "$py_version" =~ ^3\.[0-9]+$ ]]; then
  echo "error: --python-version wants 3.N, got $py_version" >&2
  exit 2
fi
python="${PYTHON:-}"
if [[ -z "$python" ]]; then
  if [[ -x "$repo/.venv/bin/python" ]]; then python="$repo/.venv/bin/python"; else python=python3; fi
fi

mkdir -p "$out"
# name==version for each listed name, from the venv (a name it lacks is an error: the pins
# must be what the tests ran).
"$python" - "$repo/hack/gpu-wheelhouse.txt" > "$out/requirements.txt" <<'EOF'
import importlib.metadata as md
import sys

missing = []
for line in open(sys.argv[1], encoding="utf-8"):
    name = line.split("#", 1)[0].strip()
    if not name:
        continue
    try:
        print(f"{name}=={md.version(name)}")
    except md.PackageNotFoundError:
        missing.append(name)
if missing:
    sys.exit(f"error: not installed in {sys.prefix}: {', '.join(missing)}")
EOF

abi="cp${py_version/./}"
"$python" -m pip download --quiet --no-deps --only-binary=:all: --dest "$out" \
  --python-version "$py_version" --implementation cp \
  --abi "$abi" --abi abi3 --abi none \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
  --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform any \
  -r "$out/requirements.txt"

wheels=$(find "$out" -maxdepth 1 -name '*.whl' | wc -l)
bytes=$(du -cb "$out"/*.whl | tail -1 | cut -f1)
echo "wheelhouse: $wheels wheels for cp${py_version/./}, $((bytes / 1048576)) MiB ($bytes bytes) in $out"

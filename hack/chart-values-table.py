#!/usr/bin/env python3
"""Write the values table of charts/bge-predictor/README.md from values.yaml and its comments.

    python3 hack/chart-values-table.py          # rewrite the table in the README
    python3 hack/chart-values-table.py --check  # exit 1 when the README's table is stale

Every leaf of values.yaml is a row: key, default, and the comment written above it (or after it
on the same line). ``reranker.*`` rows are listed only where the default differs from
``embedder.*``, since both components take the same keys. tests/k8s checks the table is current.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import yaml

CHART = Path(__file__).resolve().parents[1] / "charts" / "bge-predictor"
START = "<!-- values-table:start (hack/chart-values-table.py) -->"
END = "<!-- values-table:end -->"
KEY = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z0-9_.-]+):(?P<rest>.*)$")


def comments(text: str) -> dict[str, str]:
    """Dotted key -> the comment block above it (and its trailing comment)."""
    found: dict[str, str] = {}
    stack: list[tuple[int, str]] = []
    block: list[str] = []
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped:
            block = []
            continue
        if stripped.startswith("#"):
            block.append(stripped.lstrip("#").strip())
            continue
        match = KEY.match(line)
        if not match:  # a list item or a continuation: not a key of its own
            block = []
            continue
        indent = len(match["indent"])
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, match["key"]))
        path = ".".join(k for _, k in stack)
        rest = match["rest"]
        trailing = rest.split(" # ", 1)[1].strip() if " # " in rest else ""
        found[path] = " ".join([*block, trailing]).strip()
        block = []
    return found


def leaves(value: Any, prefix: str = "") -> list[tuple[str, Any]]:
    if isinstance(value, dict) and value:
        out = []
        for key, inner in value.items():
            out += leaves(inner, f"{prefix}.{key}" if prefix else str(key))
        return out
    return [(prefix, value)]


def render(value: Any) -> str:
    if isinstance(value, str):
        return json.dumps(value)
    return json.dumps(value, separators=(", ", ": "))


def table() -> str:
    text = (CHART / "values.yaml").read_text()
    values = yaml.safe_load(text)
    notes = comments(text)
    embedder = dict(leaves(values.get("embedder", {}), "embedder"))
    rows = ["| Key | Default | Description |", "|---|---|---|"]
    used: set[str] = set()
    for key, default in leaves(values):
        if key.startswith("reranker.") and embedder.get("embedder." + key[9:], object()) == default:
            continue
        # The key's own comment, else its section's on the section's first row.
        note = notes.get(key, "")
        parent = key.rpartition(".")[0]
        if not note and parent not in ("", "embedder", "reranker", *used):
            note = notes.get(parent, "")
        used.add(parent)
        cell = note.replace("|", "\\|").replace("<", "&lt;")
        rows.append(f"| `{key}` | `{render(default).replace('|', chr(92) + '|')}` | {cell} |")
    return "\n".join(rows)


def main() -> int:
    readme = CHART / "README.md"
    text = readme.read_text()
    if START not in text or END not in text:
        print(f"{readme}: markers {START} / {END} missing", file=sys.stderr)
        return 1
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    updated = f"{head}{START}\n{table()}\n{END}{tail}"
    if "--check" in sys.argv[1:]:
        if updated != text:
            print("charts/bge-predictor/README.md: values table is stale; run "
                  "python3 hack/chart-values-table.py", file=sys.stderr)
            return 1
        return 0
    readme.write_text(updated)
    return 0


if __name__ == "__main__":
    sys.exit(main())

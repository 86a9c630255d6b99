"""``python -m bench.verdict results.json``: one line per GPU target, met or short.

The targets (issue 15; full-size BGE-M3 and bge-reranker-v2-m3 shapes, random weights, fp16,
~512-token inputs, one H100/H200), judged on ``ours`` (the server over HTTP), with ``limit``
(the bare forward) beside it for scale:

- dense >= 400k tokens/s (dense-long), dense+sparse >= 350k tokens/s (hybrid-long),
- rerank >= 1.2k pairs/s (rerank-long),
- idle p50 <= 15 ms for one short query,
- fp16 cosine to fp32 >= 0.999 for dense and ColBERT (``bench/fidelity.py``).

Other servers in the same run (``ours@compile``: ``--torch_compile``) get a ``COMPARE`` line
per throughput target and for the idle p50, as a ratio to ``ours``: what decides whether such
a setting should become the default.

A target whose figure is missing (its cell did not run) is reported as ``NOT MEASURED``. A
``--tiny`` run on CPU prints the same lines, marked as a dry run: they show the kit works, not
what a GPU does.
"""

from __future__ import annotations

import sys

from .summary import print_from_results

# (name, workload, field, unit, target, higher is better)
THROUGHPUT = (
    ("dense", "dense-long", "tokens_per_s", "tokens/s", 400_000),
    ("dense+sparse", "hybrid-long", "tokens_per_s", "tokens/s", 350_000),
    ("rerank", "rerank-long", "texts_per_s", "pairs/s", 1_200),
)
IDLE_P50_MS = 15.0
COSINE = 0.999


def verdicts(payload: dict) -> list[str]:
    meta = payload["meta"]
    clients = meta["settings"]["clients"]
    cells = {(c["workload"], c["mode"]): c for c in payload["cells"] if c["clients"] == clients}
    dry = meta["models"].get("shape") != "full" or not str(
        meta["settings"].get("device", "")).startswith("cuda")
    tag = " [dry run: tiny model / CPU, not a GPU figure]" if dry else ""
    lines = []
    for name, workload, field, unit, target in THROUGHPUT:
        ours, limit = cells.get((workload, "ours")), cells.get((workload, "limit"))
        beside = f" (limit {limit[field]:,.0f})" if limit else ""
        if ours is None:
            lines.append(f"NOT MEASURED  {name} >= {target:,} {unit}{tag}")
            continue
        ok = "MET  " if ours[field] >= target else "SHORT"
        lines.append(f"{ok} {name} >= {target:,} {unit}: ours {ours[field]:,.0f}{beside}, "
                     f"{workload}, {clients} clients{tag}")
    idle = (payload.get("idle_p50_ms") or {}).get("ours")
    if idle is None:
        lines.append(f"NOT MEASURED  idle p50 <= {IDLE_P50_MS:g} ms, one short query{tag}")
    else:
        ok = "MET  " if idle <= IDLE_P50_MS else "SHORT"
        lines.append(f"{ok} idle p50 <= {IDLE_P50_MS:g} ms, one short query: ours {idle:.2f} ms"
                     f"{tag}")
    lines += comparisons(cells, payload, tag)
    fid = payload.get("fidelity")
    for label, key in (("dense", "dense_cosine_min"), ("ColBERT", "colbert_cosine_min")):
        if not fid or key not in fid:
            lines.append(f"NOT MEASURED  {label} cosine to fp32 >= {COSINE}{tag}")
            continue
        ok = "MET  " if fid[key] >= COSINE else "SHORT"
        precision = "fp16" if meta["settings"].get("fp16") else "fp32"
        lines.append(f"{ok} {label} cosine ({precision} served) to fp32 >= {COSINE}: min "
                     f"{fid[key]:.6f} over {fid['texts']} texts{tag}")
    return lines


def comparisons(cells: dict, payload: dict, tag: str) -> list[str]:
    """``COMPARE`` lines: each other ``ours@...`` server against ``ours``."""
    others = sorted({mode for _, mode in cells if mode.startswith("ours@")})
    idle = payload.get("idle_p50_ms") or {}
    lines = []
    for other in others:
        for name, workload, field, unit, _ in THROUGHPUT:
            base, cell = cells.get((workload, "ours")), cells.get((workload, other))
            if base and cell and base[field]:
                lines.append(f"COMPARE {other} vs ours, {name}: {cell[field]:,.0f} vs "
                             f"{base[field]:,.0f} {unit} ({cell[field] / base[field]:.2f}x){tag}")
        if idle.get(other) is not None and idle.get("ours"):
            lines.append(f"COMPARE {other} vs ours, idle p50: {idle[other]:.2f} vs "
                         f"{idle['ours']:.2f} ms{tag}")
    return lines


def main(argv: list[str] | None = None) -> int:
    return print_from_results(argv, "bench.verdict", verdicts)


if __name__ == "__main__":
    sys.exit(main())

"""``python -m bench.summary results.json``: the few figures a GPU run is judged by.

Dense and hybrid tokens/s (long texts), rerank pairs/s, the idle p50 of one short query, and
the fp16-vs-fp32 cosine of the served outputs.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable


def summarise(payload: dict) -> list[str]:
    clients = payload["meta"]["settings"]["clients"]
    cells = {(c["workload"], c["mode"]): c for c in payload["cells"] if c["clients"] == clients}
    lines = [f"machine: {payload['meta']['machine']}", f"at {clients} clients:"]
    for workload, unit, per in (("dense-long", "tokens/s", "tokens_per_s"),
                                ("hybrid-long", "tokens/s", "tokens_per_s"),
                                ("colbert-long", "tokens/s", "tokens_per_s"),
                                ("rerank-short", "pairs/s", "texts_per_s"),
                                ("rerank-long", "pairs/s", "texts_per_s")):
        parts = [f"{mode} {cells[(workload, mode)][per]:,.0f}"
                 for mode in ("limit", "library", "ours", "peer") if (workload, mode) in cells]
        if parts:
            lines.append(f"  {workload:13s} {unit:9s} " + ", ".join(parts))
    idle = payload.get("idle_p50_ms") or {}
    if idle:
        lines.append("idle p50, one short query: " + ", ".join(f"{m} {v:.2f} ms"
                                                            for m, v in idle.items()))
    fid = payload.get("fidelity")
    if fid:
        lines.append(f"fp16 vs fp32: dense cosine min {fid['dense_cosine_min']}, ColBERT cosine "
                     f"min {fid['colbert_cosine_min']} (target >= 0.999: "
                     f"{'met' if fid['cosine_target_met'] else 'SHORT'}), sparse max |diff| "
                     f"{fid['sparse_max_abs_diff']}, rerank logit max |diff| "
                     f"{fid['rerank_logit_max_abs_diff']}")
    return lines


def print_from_results(argv: list[str] | None, prog: str,
                       lines_of: Callable[[dict], list[str]]) -> int:
    """``python -m PROG results.json``: print ``lines_of`` the run's results (2 on bad usage)."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print(f"usage: python -m {prog} results.json", file=sys.stderr)
        return 2
    with open(argv[0], encoding="utf-8") as f:
        print("\n".join(lines_of(json.load(f))))
    return 0


def main(argv: list[str] | None = None) -> int:
    return print_from_results(argv, "bench.summary", summarise)


if __name__ == "__main__":
    sys.exit(main())

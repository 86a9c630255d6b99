"""Tables and ratios, as plain text for the terminal and as Markdown for docs/benchmarks.md."""

from __future__ import annotations

import math
import os
import platform
from collections.abc import Iterable

from .stats import Cell

#: ours / other at the main concurrency; the peer target is for dense (it serves dense only).
TARGETS = {"library": 2.0, "limit": 0.85, "peer": 1.2}
IDLE_TARGET_MS = 5.0
MODES = ("limit", "library", "ours", "before", "peer")

HEADER = ("workload", "mode", "clients", "texts/s", "tokens/s", "p50 ms", "p95 ms", "p99 ms",
          "peak RSS MB", "texts/CPU-s", "errors")


def _fmt(x: float | None, digits: int = 1) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{x:,.{digits}f}"


def cell_row(cell: Cell) -> tuple[str, ...]:
    return (cell.workload, cell.mode, str(cell.clients), _fmt(cell.texts_per_s),
            _fmt(cell.tokens_per_s, 0), _fmt(cell.latency_ms(50)), _fmt(cell.latency_ms(95)),
            _fmt(cell.latency_ms(99)), _fmt(cell.peak_rss_mb, 0), _fmt(cell.texts_per_cpu_s),
            str(cell.errors))


RATIO_HEADER = ("workload", "ratio", "texts/s", "target", "verdict", "texts/CPU-s")


DTYPE_HEADER = ("workload", "contender", "vs float32", "texts/s", "float32 texts/s",
                "per-round ratios")


def dtype_rows(all_cells: Iterable[Cell], clients: int) -> list[tuple[str, ...]]:
    """Per workload and contender run in several dtypes (``ours@bfloat16``...): each dtype's
    texts/s over the same contender's ``@float32``, the median of the rounds' ratios (the
    rounds alternate the order, so both sides of a ratio ran within the same minute)."""
    runs: dict[tuple[str, str, str], list[Cell]] = {}
    for c in all_cells:
        kind, _, dtype = c.mode.partition("@")
        if dtype and c.clients == clients:
            runs.setdefault((c.workload, kind, dtype), []).append(c)
    rows = []
    for (workload, kind, dtype), cells in runs.items():
        base = runs.get((workload, kind, "float32"))
        if dtype == "float32" or not base:
            continue
        ratios = sorted(a.texts_per_s / b.texts_per_s for a, b in zip(cells, base, strict=False)
                        if b.texts_per_s)
        if not ratios:
            continue
        median = ratios[len(ratios) // 2] if len(ratios) % 2 else \
            (ratios[len(ratios) // 2 - 1] + ratios[len(ratios) // 2]) / 2
        rows.append((workload, f"{kind}@{dtype}", f"{median:.2f}x",
                     f"{max(c.texts_per_s for c in cells):.1f}",
                     f"{max(c.texts_per_s for c in base):.1f}",
                     " ".join(f"{r:.2f}" for r in ratios)))
    return rows


BASELINE_HEADER = ("workload", "contenders", "median ratio", "texts/s", "before texts/s",
                   "per-round ratios", "texts/CPU-s ratio")


def _median(xs: list[float]) -> float:
    xs = sorted(xs)
    mid = len(xs) // 2
    return xs[mid] if len(xs) % 2 else (xs[mid - 1] + xs[mid]) / 2


def baseline_rows(all_cells: Iterable[Cell], clients: int) -> list[tuple[str, ...]]:
    """Per workload: ``ours`` (this checkout) over ``before`` (``--baseline``), each
    ``ours@dtype`` over ``before@dtype``: the median of the per-round ratios (the rounds
    alternate the order, so both sides of a ratio ran within the same minute), the best
    texts/s of each, and the median ratio per CPU-second of each server."""
    runs: dict[tuple[str, str, str], list[Cell]] = {}
    for c in all_cells:
        kind, at, dtype = c.mode.partition("@")
        if kind in ("ours", "before") and c.clients == clients:
            runs.setdefault((c.workload, kind, at + dtype), []).append(c)
    rows = []
    for (workload, kind, suffix), cells in runs.items():
        base = runs.get((workload, "before", suffix))
        if kind != "ours" or not base:
            continue
        pairs = list(zip(cells, base, strict=False))
        ratios = [a.texts_per_s / b.texts_per_s for a, b in pairs if b.texts_per_s]
        if not ratios:
            continue
        cpu = [a.texts_per_cpu_s / b.texts_per_cpu_s for a, b in pairs
               if a.texts_per_cpu_s and b.texts_per_cpu_s]
        rows.append((workload, f"ours{suffix} / before{suffix}", f"{_median(ratios):.2f}x",
                     f"{max(c.texts_per_s for c in cells):.1f}",
                     f"{max(c.texts_per_s for c in base):.1f}",
                     " ".join(f"{r:.2f}" for r in ratios),
                     f"{_median(cpu):.2f}x" if cpu else "-"))
    return rows


def ratio_rows(cells: Iterable[Cell], clients: int) -> list[tuple[str, ...]]:
    """Per workload: ours' texts/s over each other contender's, against the targets.

    The last column is the same ratio per CPU-second of each contender's own process: a check
    on the wall-clock ratio when other users load the machine.
    """
    by_key = {(c.workload, c.mode): c for c in cells if c.clients == clients}
    workloads = list(dict.fromkeys(w for w, _ in by_key))
    rows = []
    for workload in workloads:
        ours = by_key.get((workload, "ours"))
        if ours is None:
            continue
        for other in ("library", "limit", "peer"):
            cell = by_key.get((workload, other))
            if cell is None or not cell.texts_per_s:
                continue
            ratio = ours.texts_per_s / cell.texts_per_s
            target = TARGETS[other]
            if other == "peer" and not workload.startswith("dense"):
                verdict = "(no target)"
            else:
                verdict = "met" if ratio >= target else "SHORT"
            cpu = "-"
            if ours.texts_per_cpu_s and cell.texts_per_cpu_s:
                cpu = f"{ours.texts_per_cpu_s / cell.texts_per_cpu_s:.2f}x"
            rows.append((workload, f"ours / {other}", f"{ratio:.2f}x", f">= {target}x", verdict,
                         cpu))
    return rows


def idle_rows(idle: dict[str, float]) -> list[tuple[str, ...]]:
    rows = [(mode, _fmt(ms, 2)) for mode, ms in idle.items()]
    if "ours" in idle and "limit" in idle:
        gap = idle["ours"] - idle["limit"]
        verdict = "met" if gap <= IDLE_TARGET_MS else "SHORT"
        rows.append(("ours - limit", f"{gap:+.2f} (target <= +{IDLE_TARGET_MS:.0f}: {verdict})"))
    return rows


def text_table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=False)]
    line = "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))
    out = [line, "-" * len(line)]
    for row in rows:
        out.append("  ".join(str(x).rjust(w) if i >= 2 else str(x).ljust(w)
                             for i, (x, w) in enumerate(zip(row, widths, strict=True))))
    return "\n".join(out)


def md_table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    out = ["| " + " | ".join(header) + " |",
           "|" + "|".join("---" if i < 2 else "---:" for i in range(len(header))) + "|"]
    out += ["| " + " | ".join(str(x) for x in row) + " |" for row in rows]
    return "\n".join(out)


def sort_cells(cells: list[Cell]) -> list[Cell]:
    order = {m: i for i, m in enumerate(MODES)}
    first = {}
    for c in cells:
        first.setdefault(c.workload, len(first))
    return sorted(cells, key=lambda c: (c.clients, first[c.workload], order.get(c.mode, 9)))


def machine() -> dict[str, str]:
    """nproc, CPU model, RAM, OS and library versions, for the record."""
    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f
                        if line.startswith("model name")), "")
    except OSError:
        pass
    mem_gib = ""
    try:
        with open("/proc/meminfo") as f:
            kb = int(next(line for line in f if line.startswith("MemTotal")).split()[1])
            mem_gib = f"{kb / 2**20:.1f} GiB"
    except (OSError, StopIteration):
        pass
    info = {"nproc": str(os.cpu_count()), "cpu": cpu or platform.processor(), "ram": mem_gib,
            "os": platform.platform(), "python": platform.python_version()}
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = str(torch.get_num_threads())
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return info

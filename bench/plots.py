"""PNG charts of a run (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

import pathlib

from .stats import Cell

COLORS = {"limit": "#555555", "library": "#d62728", "ours": "#1f77b4", "peer": "#2ca02c",
          "before": "#9467bd"}
#: the contenders drawn as bars or curves (``limit`` is the reference line); cells of other
#: names (``ours@bfloat16``...) are left out of the charts, and a chart with none is skipped.
DRAWN = ("library", "ours", "before", "peer")


def available() -> bool:
    """matplotlib is optional: the GPU kit's offline venv has none, so charts are skipped."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _legend(ax, **kwargs) -> None:
    """One legend entry per label (bars are drawn one per workload)."""
    handles, labels = ax.get_legend_handles_labels()
    unique = dict(zip(labels, handles, strict=True))
    ax.legend(unique.values(), unique.keys(), **kwargs)


def throughput_vs_clients(cells: list[Cell], workload: str, out: pathlib.Path,
                          title: str) -> pathlib.Path | None:
    """texts/s against the number of concurrent clients; ``limit`` as a horizontal line."""
    plt = _plt()
    mine = [c for c in cells if c.workload == workload]
    if not mine:
        return None
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    if not any(c.mode in DRAWN for c in mine):
        return None
    for mode in DRAWN:
        points = sorted((c.clients, c.texts_per_s) for c in mine if c.mode == mode)
        if points:
            xs, ys = zip(*points, strict=True)
            ax.plot(xs, ys, marker="o", label=mode, color=COLORS[mode])
    limits = [c.texts_per_s for c in mine if c.mode == "limit"]
    if limits:
        ax.axhline(max(limits), linestyle="--", color=COLORS["limit"],
                   label="limit (bare forward, full batches)")
    clients = sorted({c.clients for c in mine if c.mode != "limit"})
    ax.set_xscale("log", base=2)
    ax.set_xticks(clients, [str(c) for c in clients])
    ax.set_xlabel("concurrent clients")
    ax.set_ylabel("texts / s")
    ax.set_ylim(bottom=0)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="center right")
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return out


def latency_percentiles(cells: list[Cell], clients: int, out: pathlib.Path,
                        title: str) -> pathlib.Path | None:
    """p50 / p95 / p99 request latency per workload and contender (log scale)."""
    plt = _plt()
    mine = [c for c in cells if c.clients == clients and c.mode != "limit" and c.latencies_s]
    if not mine:
        return None
    workloads = list(dict.fromkeys(c.workload for c in mine))
    modes = [m for m in DRAWN if any(c.mode == m for c in mine)]
    if not modes:
        return None
    fig, ax = plt.subplots(figsize=(max(7, 1.3 * len(workloads)), 4.5), dpi=110)
    width = 0.8 / len(modes)
    for j, mode in enumerate(modes):
        for i, workload in enumerate(workloads):
            cell = next((c for c in mine if c.mode == mode and c.workload == workload), None)
            if cell is None:
                continue
            x = i + (j - (len(modes) - 1) / 2) * width
            p50, p95, p99 = (cell.latency_ms(q) for q in (50, 95, 99))
            ax.bar(x, p50, width * 0.9, color=COLORS[mode], label=mode)
            ax.vlines(x, p50, p99, color="black", linewidth=1)
            ax.plot([x], [p95], marker="_", color="black", markersize=8)
            ax.plot([x], [p99], marker="_", color="black", markersize=5)
    ax.set_xticks(range(len(workloads)), workloads, rotation=30, ha="right")
    ax.set_yscale("log")
    ax.set_ylabel("latency, ms (bar p50, ticks p95 and p99)")
    ax.set_title(title)
    ax.grid(alpha=0.3, axis="y")
    _legend(ax)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return out


def throughput_by_workload(cells: list[Cell], clients: int, out: pathlib.Path,
                           title: str) -> pathlib.Path | None:
    """tokens/s per workload and contender, relative to ``limit`` (= 1.0)."""
    plt = _plt()
    mine = [c for c in cells if c.clients == clients]
    workloads = list(dict.fromkeys(c.workload for c in mine))
    limit = {c.workload: c.tokens_per_s for c in mine if c.mode == "limit"}
    if not workloads or not limit:
        return None
    modes = [m for m in DRAWN if any(c.mode == m for c in mine)]
    if not modes:
        return None
    fig, ax = plt.subplots(figsize=(max(7, 1.3 * len(workloads)), 4.2), dpi=110)
    width = 0.8 / len(modes)
    for j, mode in enumerate(modes):
        for i, workload in enumerate(workloads):
            cell = next((c for c in mine if c.mode == mode and c.workload == workload), None)
            if cell is None or not limit.get(workload):
                continue
            x = i + (j - (len(modes) - 1) / 2) * width
            ax.bar(x, cell.tokens_per_s / limit[workload], width * 0.9, color=COLORS[mode],
                   label=mode)
    ax.axhline(1.0, linestyle="--", color=COLORS["limit"], label="limit")
    ax.axhline(0.85, linestyle=":", color=COLORS["ours"], label="target for ours (0.85)")
    ax.set_xticks(range(len(workloads)), workloads, rotation=30, ha="right")
    ax.set_ylabel(f"throughput / limit ({clients} clients)")
    ax.set_title(title)
    ax.grid(alpha=0.3, axis="y")
    _legend(ax, fontsize=8)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return out

"""``python -m bench.run``: every contender, side by side, on the same model and texts.

Contenders (see ``bench/modes/``): ``limit`` (bare forward on pre-built full batches),
``library`` (FlagEmbedding called once per request), ``ours`` (the predictor over HTTP) and
``peer`` (Infinity over HTTP); with ``--baseline DIR`` also ``before``: ``ours`` served from
another checkout of this repository, to compare two versions of the code side by side. All are
started first and stay loaded; then each workload is measured on each contender in turn, so a
noisy neighbour on the machine hits all of them within the same minute. Then a sweep over the
number of clients, and the idle single-text latency.

Prints a table and the ratios against the targets; writes ``results.json`` and
``results.md`` under ``--out`` and PNG charts under ``--plots-dir``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import pathlib
import shlex
import sys
import time

from . import plots, report
from .models import SHAPES, ensure_models, sentence_transformers_view
from .stats import Cell, percentile, reset_tree_peak, tree_cpu_s, tree_peak_mb
from .workloads import DENSE, WORKLOADS, Workload, make_corpus

ROOT = pathlib.Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
DOCS_IMG = ROOT / "docs" / "img"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n")[0])
    p.add_argument("--shape", choices=sorted(SHAPES), default="small",
                   help="random-weight model size (small: 6 layers x 384, bge-m3's vocabulary)")
    p.add_argument("--m3", help="use this BGE-M3 directory instead of building one")
    p.add_argument("--reranker", help="use this cross-encoder directory instead")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    p.add_argument("--fp16", action=argparse.BooleanOptionalAction, default=None,
                   help="half precision (default: on for cuda, off for cpu)")
    p.add_argument("--modes", default="limit,library,ours,peer")
    p.add_argument("--workloads", default=",".join(WORKLOADS),
                   help=f"comma-separated, from: {', '.join(WORKLOADS)}")
    p.add_argument("--clients", type=int, default=16, help="concurrent clients (main table)")
    p.add_argument("--sweep", default="1,4,16,32",
                   help="client counts for the throughput-vs-clients chart ('' to skip)")
    p.add_argument("--sweep-workload", default="dense-short")
    p.add_argument("--duration", type=float, default=8.0, help="seconds of load per cell")
    p.add_argument("--rounds", type=int, default=1,
                   help="measure the main table this many times (mode order reversed every "
                        "other round) and keep each cell's best: other load on the machine "
                        "only ever slows a contender down")
    p.add_argument("--texts-per-request", type=int, default=4, help="short texts per request")
    p.add_argument("--long-texts-per-request", type=int, default=2,
                   help="~512-token texts per request")
    p.add_argument("--long-tokens", default="480-512", help="token range of the long texts")
    p.add_argument("--short-pool", type=int, default=1024, help="distinct short texts")
    p.add_argument("--long-pool", type=int, default=256, help="distinct long texts")
    p.add_argument("--idle-requests", type=int, default=40,
                   help="single-text requests for the idle latency")
    p.add_argument("--library-sharing", choices=("serial", "threads"), default="threads",
                   help="library: one call at a time (serial) or all client threads at once")
    p.add_argument("--max-batch-size", type=int, default=64,
                   help="limit's batches and the peer's batch size (ours: its own default)")
    p.add_argument("--max-batch-tokens", type=int, default=None,
                   help="limit's padded-token budget per batch (default: the server's, 4096 on "
                        "CPU (8 texts of 512 tokens, the fastest long-text batch on this CPU; "
                        "short texts hit the size cap), 16384 on GPU)")
    p.add_argument("--ours-arg", action="append", default=[],
                   help="extra flag for python -m predictor (repeatable), e.g. "
                        "--ours-arg=--batch_wait_ms=1")
    p.add_argument("--ours-env", action="append", default=[], metavar="KEY=VALUE",
                   help="environment variable for the server (repeatable), e.g. "
                        "OMP_NUM_THREADS=1")
    p.add_argument("--baseline", type=pathlib.Path, metavar="DIR",
                   help="another checkout of this repository (e.g. a git worktree of an older "
                        "commit): adds contender 'before', the same server command, flags and "
                        "Python, run from DIR so that it imports DIR's predictor package")
    p.add_argument("--peer-venv", type=pathlib.Path,
                   default=ROOT / "bench" / ".peer-venv")
    p.add_argument("--no-peer-install", action="store_true",
                   help="do not create the peer's venv when it is missing")
    p.add_argument("--fidelity", action="store_true",
                   help="also compare ours' outputs with an fp32 in-process reference")
    p.add_argument("--quick", action="store_true",
                   help="~2-minute smoke run: 2 s cells, small pools, sweep 1 and 16")
    p.add_argument("--tiny", action="store_true",
                   help="tiny model and --quick settings (checks the harness end to end)")
    p.add_argument("--out", type=pathlib.Path, help="results dir (default bench/results/<time>)")
    p.add_argument("--plots-dir", type=pathlib.Path,
                   help="where the PNG charts go (default docs/img for a full run, else --out)")
    args = p.parse_args(argv)
    _check_baseline(p, args)
    if args.tiny:
        args.quick = True
        args.shape = "tiny"
    if args.quick:
        args.duration = min(args.duration, 2.0)
        args.sweep = "1,16" if args.sweep == "1,4,16,32" else args.sweep
        args.long_texts_per_request = min(args.long_texts_per_request, 1)
        args.short_pool, args.long_pool = min(args.short_pool, 256), min(args.long_pool, 32)
        args.idle_requests = min(args.idle_requests, 15)
    if args.fp16 is None:
        args.fp16 = args.device.startswith("cuda")
    if args.max_batch_tokens is None:
        from predictor.settings import CPU_BATCH_TOKENS, GPU_BATCH_TOKENS

        args.max_batch_tokens = (GPU_BATCH_TOKENS if args.device.startswith("cuda")
                                 else CPU_BATCH_TOKENS)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    args.out = args.out or RESULTS / stamp
    if args.plots_dir is None:
        full = (not args.quick and args.shape == "small" and args.device == "cpu"
                and args.baseline is None)  # a before/after run keeps docs/img's charts
        args.plots_dir = DOCS_IMG if full else args.out
    return args


def server_variant(part: str) -> tuple[list[str], dict[str, str]] | None:
    """A server setting a contender's variant may name besides a dtype (``ours@compile``,
    ``ours@pipeline0``, ``ours@float16+compile``) as (flags, environment); None: not one."""
    if part == "compile":
        return ["--torch_compile=true"], {}
    if part.startswith("pipeline") and part[len("pipeline"):].isdigit():
        return [], {"BGE_PREDICTOR_PIPELINE": part[len("pipeline"):]}  # 0: none
    return None


def split_mode(mode: str) -> tuple[str, str, list[str], dict[str, str]]:
    """``contender[@variant]`` -> (contender, dtype or "", server flags, server environment):
    the variant is a dtype and/or server settings (``server_variant``) joined by ``+``."""
    kind, _, variant = mode.partition("@")
    dtypes, flags, env = [], [], {}
    for part in (part for part in variant.split("+") if part):
        setting = server_variant(part)
        if setting is None:
            dtypes.append(part)
        else:
            flags += setting[0]
            env.update(setting[1])
    if len(dtypes) > 1:
        raise ValueError(f"{mode}: one dtype per contender")
    if (flags or env) and kind not in ("ours", "before"):
        raise ValueError(f"{mode}: {variant} is a server setting (ours, before)")
    return kind, dtypes[0] if dtypes else "", flags, env


def _check_baseline(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """``--baseline DIR`` must be another checkout with a ``predictor`` package; it adds
    contender ``before`` unless ``--modes`` names it (``before`` or ``before@dtype``)."""
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    named = any(m.partition("@")[0] == "before" for m in modes)
    if args.baseline is None:
        if named:
            p.error("contender 'before' needs --baseline DIR (another checkout of this "
                    "repository)")
        return
    base = args.baseline.expanduser().resolve()
    if not base.is_dir():
        p.error(f"--baseline {args.baseline}: not a directory")
    if not (base / "predictor" / "__init__.py").is_file():
        p.error(f"--baseline {args.baseline}: no predictor/ package there; expected a checkout "
                "of this repository, e.g. git worktree add --detach DIR <commit>")
    if base == ROOT:
        p.error(f"--baseline {args.baseline}: that is this checkout; 'before' would run the "
                "same code as 'ours'")
    args.baseline = base
    if not named:
        args.modes = ",".join([*modes, "before"])


class Bench:
    """Holds the contenders; each ``measure`` is one cell, printed as soon as it is done."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.cells: list[Cell] = []
        self.all_cells: list[Cell] = []  # every round, for the record
        self.unavailable: dict[str, str] = {}
        self.workers: dict = {}  # limit / library: InProcWorker
        self.servers: dict = {}  # ours / peer: (Server, base_url)
        self.specs: dict = {}
        self.notes: list[str] = []

    # -- contenders ------------------------------------------------------------------------
    def start(self, modes: list[str], m3_dir: pathlib.Path, rr_dir: pathlib.Path) -> None:
        a = self.args
        for mode in modes:
            t0 = time.perf_counter()
            try:
                self._start_one(mode, m3_dir, rr_dir)
            except Exception as exc:  # a contender that cannot run is reported, not fatal
                reason = str(exc).strip().splitlines()
                self.unavailable[mode] = reason[0] if reason else type(exc).__name__
                print(f"  {mode}: unavailable ({self.unavailable[mode]})", flush=True)
                if len(reason) > 1:
                    print("    " + "\n    ".join(reason[1:12]), flush=True)
                continue
            print(f"  {mode}: ready in {time.perf_counter() - t0:.1f}s", flush=True)
        del a

    def _start_one(self, mode: str, m3_dir: pathlib.Path, rr_dir: pathlib.Path) -> None:
        """``mode``: a contender, or ``contender@dtype`` (limit, library, ours) to run it in
        that ``--dtype``: ``--modes ours@float32,ours@auto`` serves both side by side.
        ``ours@compile`` (or ``ours@float16+compile``) serves with ``--torch_compile``,
        ``ours@pipeline0`` with ``BGE_PREDICTOR_PIPELINE=0`` (``split_mode``)."""
        a = self.args
        kind, dtype, server_flags, server_env = split_mode(mode)
        if kind in ("limit", "library"):
            from .modes.inproc import InProcWorker

            load = {"m3_dir": str(m3_dir), "rr_dir": str(rr_dir), "device": a.device,
                    "fp16": a.fp16}
            if dtype:
                load["dtype"] = dtype
            if kind == "limit":
                load.update(max_batch_size=a.max_batch_size, max_batch_tokens=a.max_batch_tokens)
            else:
                load.update(sharing=a.library_sharing)
            self.workers[mode] = InProcWorker(kind, **load)
        elif kind in ("ours", "before"):
            from .modes import ours

            env = dict(item.split("=", 1) for item in a.ours_env) | server_env
            cwd = None
            if kind == "before":
                cwd, env = a.baseline, ours.baseline_env(a.baseline, env)
                where = ours.check_import(cwd, env)
                self.notes.append(f"{mode}: predictor from {where} ({_describe(cwd)})")
                print(f"  {mode}: imports {where}", flush=True)
            extra = a.ours_arg + server_flags
            self.servers[mode] = ours.start(m3_dir, rr_dir, a.device, a.fp16, a.out, extra,
                                            env, dtype=dtype or None, name=mode, cwd=cwd)
            self.specs[mode] = ours.OursSpec()
        elif mode == "peer":
            from .modes import peer

            why = peer.ensure_venv(a.peer_venv, install=not a.no_peer_install)
            if why:
                raise RuntimeError(why)
            hidden = json.loads((m3_dir / "config.json").read_text())["hidden_size"]
            st_dir = sentence_transformers_view(m3_dir, hidden)
            self.servers[mode] = peer.start(a.peer_venv, st_dir, rr_dir, a.device, a.fp16,
                                            a.max_batch_size, a.out)
            self.specs[mode] = peer.PeerSpec()
        else:
            raise ValueError(f"unknown mode {mode!r}")

    def available(self, modes: list[str]) -> list[str]:
        return [m for m in modes if m in self.workers or m in self.servers]

    def stop(self) -> None:
        for worker in self.workers.values():
            worker.close()
        for server, _ in self.servers.values():
            server.stop()

    # -- measuring -------------------------------------------------------------------------
    def measure(self, mode: str, workload: Workload, corpus, clients: int) -> Cell | None:
        a = self.args
        if mode in self.workers:
            cell = self.workers[mode].run(workload, corpus, clients, a.duration)
        else:
            from .modes.http_load import closed_loop

            server, base = self.servers[mode]
            spec = self.specs[mode]
            if not spec.supports(workload):
                return None
            reset_tree_peak(server.pid)
            stats0 = _engine_totals(mode, base)
            cpu0, client0 = tree_cpu_s(server.pid), time.process_time()
            cell = closed_loop(base, spec, workload, corpus, clients, a.duration)
            cpu1 = tree_cpu_s(server.pid)
            stats1 = _engine_totals(mode, base)
            if stats0 and stats1:
                from .modes.ours import engine_delta

                cell.engine = engine_delta(stats0, stats1, cell.elapsed_s)
            cell.client_cpu_s = time.process_time() - client0
            cell.cpu_s = cpu1 - cpu0 if cpu0 is not None and cpu1 is not None else None
            cell.peak_rss_mb = tree_peak_mb(server.pid)
        cell.mode = mode  # contender@dtype
        if cell.engine and cell.engine.get("padded_tokens"):
            cell.engine["padding"] = round(1 - cell.tokens / cell.engine["padded_tokens"], 3)
        cell.load_avg = round(os.getloadavg()[0], 2)
        self.all_cells.append(cell)
        same = next((c for c in self.cells if (c.mode, c.workload, c.clients) ==
                     (cell.mode, cell.workload, cell.clients)), None)
        if same is None:
            self.cells.append(cell)
        elif cell.texts_per_s > same.texts_per_s:  # best of the rounds
            self.cells[self.cells.index(same)] = cell
        engine = f"  engine {cell.engine}" if cell.engine else ""
        print("  " + "  ".join(report.cell_row(cell)) + f"  load {cell.load_avg}{engine}",
              flush=True)
        return cell

    def idle_latency(self, corpus) -> dict[str, float]:
        """p50 of one short text on an idle contender (for limit: its forward pass alone)."""
        from .modes.http_load import one_by_one

        n = self.args.idle_requests
        dense_short = Workload("idle", "embed", frozenset({DENSE}), "short")
        text = corpus.passages["short"].texts[0]
        req = corpus.request(dense_short, 0)
        req = type(req)([text], corpus.passages["short"].tokens[0])
        out = {}
        for mode in self.workers:
            if n:
                out[mode] = percentile(self.workers[mode].call("single", text, n), 50) * 1e3
        for mode in self.servers:
            if n:
                _, base = self.servers[mode]
                times = one_by_one(base, self.specs[mode], dense_short, req, n)
                out[mode] = percentile(times, 50) * 1e3
        return out

    def same_model_check(self, corpus) -> None:
        """The peer must serve the very model we serve, and ``before`` the same vectors as
        ours: compare dense vectors."""
        import numpy as np

        from .modes.http_load import post_json

        texts = corpus.passages["short"].texts[:4]
        pairs = [("ours", "peer", "/embeddings")] + [  # before@dtype against ours@dtype
            ("ours" + m[len("before"):], m, "/v1/embeddings") for m in self.servers
            if m.partition("@")[0] == "before"]
        for ours, other, path in pairs:
            if not {ours, other} <= set(self.servers):
                continue
            vecs = []
            for mode, route in ((ours, "/v1/embeddings"), (other, path)):
                answer = post_json(self.servers[mode][1], route,
                                   {"model": "bge-m3", "input": texts})
                vecs.append(np.array([d["embedding"] for d in answer["data"]], dtype=np.float32))
            diff = float(np.abs(vecs[0] - vecs[1]).max())
            note = f"{ours} vs {other} dense vectors on the same texts: max |diff| = {diff:.2e}"
            print("  " + note, flush=True)
            self.notes.append(note)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("TQDM_DISABLE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    started = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    args.plots_dir.mkdir(parents=True, exist_ok=True)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    workloads = [WORKLOADS[w.strip()] for w in args.workloads.split(",") if w.strip()]
    sweep = [int(c) for c in args.sweep.split(",") if c.strip()]
    shape = SHAPES[args.shape]

    print(f"models: {args.m3 or shape}", flush=True)
    if args.m3 and args.reranker:
        m3_dir, rr_dir = pathlib.Path(args.m3).resolve(), pathlib.Path(args.reranker).resolve()
    else:
        m3_dir, rr_dir = ensure_models(shape)
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(m3_dir))
    lo, hi = (int(x) for x in args.long_tokens.split("-"))
    corpus = make_corpus(tokenizer, short_texts=args.short_pool, long_texts=args.long_pool,
                         long_tokens=(lo, hi),
                         texts_per_request={"short": args.texts_per_request,
                                            "long": args.long_texts_per_request})
    print(f"texts: {args.short_pool} short (mean "
          f"{_mean(corpus.passages['short'].tokens):.1f} tokens), {args.long_pool} long (mean "
          f"{_mean(corpus.passages['long'].tokens):.1f} tokens)", flush=True)

    bench = Bench(args)
    idle: dict[str, float] = {}
    fidelity: dict | None = None
    try:
        print("starting contenders:", flush=True)
        bench.start(modes, m3_dir, rr_dir)
        bench.same_model_check(corpus)
        live = bench.available(modes)
        print(f"\nmain table, {args.clients} clients, {args.duration:g}s per cell:", flush=True)
        print("  " + "  ".join(report.HEADER), flush=True)
        for rnd in range(args.rounds):
            if args.rounds > 1:
                print(f" round {rnd + 1} of {args.rounds}", flush=True)
            for workload in workloads:
                for mode in (live if rnd % 2 == 0 else live[::-1]):
                    bench.measure(mode, workload, corpus, args.clients)
        sweep_workload = WORKLOADS.get(args.sweep_workload)
        if sweep and sweep_workload:
            print(f"\nsweep on {sweep_workload.name}:", flush=True)
            for clients in sweep:
                for mode in (m for m in live if m != "limit"):
                    if any(c.mode == mode and c.workload == sweep_workload.name
                           and c.clients == clients for c in bench.cells):
                        continue
                    bench.measure(mode, sweep_workload, corpus, clients)
            if "limit" in live and not any(c.mode == "limit" and c.workload ==
                                           sweep_workload.name for c in bench.cells):
                bench.measure("limit", sweep_workload, corpus, args.clients)
        print("\nidle latency, one short text:", flush=True)
        idle = bench.idle_latency(corpus)
        for mode, ms in idle.items():
            print(f"  {mode}: p50 {ms:.2f} ms", flush=True)
        if args.fidelity and "ours" in bench.servers:
            from .fidelity import check

            fidelity = check(bench.servers["ours"][1], m3_dir, rr_dir, args.device,
                             corpus.passages["long"].texts[:16], corpus.queries.texts[0])
            print(f"\nfidelity (ours {'fp16' if args.fp16 else 'fp32'} vs fp32 reference): "
                  f"{json.dumps(fidelity)}", flush=True)
    finally:
        bench.stop()

    wall = time.perf_counter() - started
    command = "python -m bench.run " + " ".join(shlex.quote(x) for x in (argv or sys.argv[1:]))
    write_report(args, bench, idle, fidelity, command, wall, m3_dir, rr_dir, corpus)
    return 0


def _describe(checkout: pathlib.Path) -> str:
    """The checkout's commit and subject, for the record ('?' outside git)."""
    import subprocess

    try:
        out = subprocess.run(["git", "-C", str(checkout), "log", "-1", "--format=%h %s"],
                             capture_output=True, text=True, timeout=10)
    except OSError:
        return "?"
    return out.stdout.strip()[:80] if out.returncode == 0 else "?"


def _engine_totals(mode: str, base: str) -> dict | None:
    if mode.partition("@")[0] not in ("ours", "before"):
        return None
    from .modes.ours import engine_totals

    try:
        return engine_totals(base)
    except Exception:  # an older server without /stats: no engine figures
        return None


def _mean(xs: list[int]) -> float:
    return sum(xs) / len(xs) if xs else 0.0


def write_report(args, bench: Bench, idle: dict, fidelity: dict | None, command: str,
                 wall: float, m3_dir, rr_dir, corpus) -> None:
    cells = report.sort_cells(bench.cells)
    rows = [report.cell_row(c) for c in cells]
    ratios = report.ratio_rows(cells, args.clients)
    idle_rows = report.idle_rows(idle)
    dtypes = report.dtype_rows(bench.all_cells, args.clients)
    baseline = report.baseline_rows(bench.all_cells, args.clients)
    print("\n" + report.text_table(report.HEADER, rows))
    if ratios:
        print("\nratios (texts/s) at", args.clients, "clients:")
        print(report.text_table(report.RATIO_HEADER, ratios))
    if dtypes:
        print("\ndtypes against float32 (texts/s) at", args.clients, "clients:")
        print(report.text_table(report.DTYPE_HEADER, dtypes))
    if baseline:
        print("\nours (this checkout) against before (--baseline) at", args.clients, "clients:")
        print(report.text_table(report.BASELINE_HEADER, baseline))
    if idle_rows:
        print("\nidle single short text, p50 ms:")
        print(report.text_table(("contender", "p50 ms"), idle_rows))
    for mode, why in bench.unavailable.items():
        print(f"{mode}: unavailable ({why})")
    print(f"\nwall time {wall:.0f}s; results in {args.out}")

    charts = []
    sw = args.sweep_workload
    for path in () if not plots.available() else (
        plots.throughput_vs_clients(cells, sw, args.plots_dir / "bench-throughput-clients.png",
                                    f"{sw}: throughput against concurrent clients"),
        plots.latency_percentiles(cells, args.clients, args.plots_dir / "bench-latency.png",
                                  f"request latency at {args.clients} clients"),
        plots.throughput_by_workload(cells, args.clients,
                                     args.plots_dir / "bench-throughput-workloads.png",
                                     f"throughput relative to limit, {args.clients} clients"),
    ):
        if path is not None:
            charts.append(str(path))
            print(f"chart: {path}")

    meta = {"command": command, "date": dt.datetime.now().astimezone().isoformat(
        timespec="seconds"), "machine": report.machine(), "wall_s": round(wall, 1),
        "models": {"m3": str(m3_dir), "reranker": str(rr_dir), "shape": args.shape},
        "texts": {"short_mean_tokens": _mean(corpus.passages["short"].tokens),
                  "long_mean_tokens": _mean(corpus.passages["long"].tokens),
                  "texts_per_request": corpus.texts_per_request},
        "settings": {k: (str(v) if isinstance(v, pathlib.Path) else v)
                     for k, v in vars(args).items()},
        "unavailable": bench.unavailable, "notes": bench.notes, "charts": charts}
    payload = {"meta": meta, "cells": [c.summary() for c in cells],
               "all_rounds": [c.summary() for c in bench.all_cells], "idle_p50_ms": idle,
               "fidelity": fidelity,
               "dtype_ratios": [dict(zip(report.DTYPE_HEADER, r, strict=True)) for r in dtypes],
               "baseline_ratios": [dict(zip(report.BASELINE_HEADER, r, strict=True))
                                   for r in baseline],
               "ratios": [dict(zip(report.RATIO_HEADER, r, strict=True)) for r in ratios]}
    (args.out / "results.json").write_text(json.dumps(payload, indent=2), encoding="utf-8")
    md = [f"Command: `{command}`", "",
          "Machine: " + ", ".join(f"{k} {v}" for k, v in meta["machine"].items()), "",
          f"Date: {meta['date']}; wall time {wall:.0f} s", "",
          report.md_table(report.HEADER, rows), ""]
    if ratios:
        md += [report.md_table(report.RATIO_HEADER, ratios), ""]
    if dtypes:
        md += [report.md_table(report.DTYPE_HEADER, dtypes), ""]
    if baseline:
        md += [report.md_table(report.BASELINE_HEADER, baseline), ""]
    if idle_rows:
        md += [report.md_table(("idle, one short text", "p50 ms"), idle_rows), ""]
    for mode, why in bench.unavailable.items():
        md.append(f"- {mode}: unavailable ({why})")
    md += [f"- {note}" for note in bench.notes]
    if fidelity:
        md.append(f"- fidelity: `{json.dumps(fidelity)}`")
    (args.out / "results.md").write_text("\n".join(md) + "\n", encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main())

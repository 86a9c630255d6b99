"""``python -m predictor.finetune``: fine-tune an embedder on ``query<TAB>passage`` pairs.

Exit codes (docs/finetune.md):

- 0: done; the model and ``training.json`` are in ``--output``.
- 1: training failed (an unexpected error; the traceback is on stderr).
- 2: bad arguments.
- 3: bad data (missing, unreadable, not UTF-8, fewer than 2 usable pairs).
- 4: the model cannot be loaded or fine-tuned (unknown family, unsupported pooling).
- 5: the method cannot run here (``qlora`` without CUDA or bitsandbytes).
- 6: ``--output`` holds a finished run or another run's checkpoints (``--overwrite``).
- 75: stopped by SIGTERM/SIGINT after saving a checkpoint; run the same command to resume
  (``EX_TEMPFAIL``: a Kubernetes Job's retry resumes where the evicted pod stopped).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback
import warnings
from pathlib import Path

from predictor.finetune.data import DataError, read_pairs
from predictor.finetune.train import HEADS, METHODS, FinetuneError, Params, Progress, train

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_DATA = 3
EXIT_MODEL = 4
EXIT_UNSUPPORTED = 5
EXIT_OUTPUT = 6
EXIT_INTERRUPTED = 75


def _positive(kind):
    def parse(value: str):
        number = kind(value)
        if number <= 0:
            raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
        return number
    return parse


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m predictor.finetune",
        description="Fine-tune BGE-M3 (or a dense embedder) on query<TAB>passage pairs with "
                    "in-batch negatives; writes a model directory --embedder serves as is.")
    p.add_argument("--model", required=True, help="Base model: local directory or Hugging Face id")
    p.add_argument("--data", required=True,
                   help="query<TAB>passage lines: a file, a directory (*.tsv, *.txt), an "
                        "http(s) URL, or - for stdin")
    p.add_argument("--output", required=True, help="Directory for the fine-tuned model")
    p.add_argument("--method", choices=METHODS, default="lora",
                   help="full, lora (default) or qlora (4-bit base, CUDA only)")
    p.add_argument("--heads", choices=HEADS, default=None,
                   help="BGE-M3: all (default; dense, sparse and ColBERT trained together) or "
                        "dense (dense score only; head files copied unchanged)")
    p.add_argument("--family", default=None,
                   help="Model family when the name does not tell (bge-m3, bge, e5, gte, ...)")
    p.add_argument("--max_steps", type=int, default=-1,
                   help="Optimizer steps (default -1: --epochs over the data)")
    p.add_argument("--epochs", type=_positive(float), default=1.0)
    p.add_argument("--batch_size", type=_positive(int), default=16,
                   help="Pairs per step; the other pairs of a batch are each query's negatives")
    p.add_argument("--learning_rate", type=_positive(float), default=None,
                   help="Default 1e-5 (full) or 1e-4 (lora, qlora)")
    p.add_argument("--warmup_ratio", type=float, default=0.1)
    p.add_argument("--temperature", type=_positive(float), default=0.02)
    p.add_argument("--query_max_len", type=_positive(int), default=64)
    p.add_argument("--passage_max_len", type=_positive(int), default=256)
    p.add_argument("--lora_r", type=_positive(int), default=16)
    p.add_argument("--lora_alpha", type=_positive(int), default=32)
    p.add_argument("--lora_dropout", type=float, default=0.05)
    p.add_argument("--lora_target_modules", default="all-linear",
                   help="Comma-separated module names, or all-linear (default)")
    p.add_argument("--self_distill", action="store_true",
                   help="BGE-M3 with --heads all: M3's self-knowledge distillation")
    p.add_argument("--gradient_checkpointing", action="store_true")
    p.add_argument("--precision", choices=("auto", "fp32", "bf16", "fp16"), default="auto")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--logging_steps", type=_positive(int), default=1)
    p.add_argument("--save_steps", type=_positive(int), default=50,
                   help="Checkpoint every N steps (in OUTPUT/.checkpoints; resumed from)")
    p.add_argument("--keep_checkpoints", action="store_true",
                   help="Keep OUTPUT/.checkpoints after a finished run")
    p.add_argument("--overwrite", action="store_true",
                   help="Delete what OUTPUT holds and start over")
    return p


def params_from_args(args: argparse.Namespace) -> Params:
    targets = [t.strip() for t in args.lora_target_modules.split(",") if t.strip()]
    return Params(
        model=args.model, method=args.method, heads=args.heads, family=args.family,
        max_steps=args.max_steps, epochs=args.epochs, batch_size=args.batch_size,
        learning_rate=args.learning_rate, warmup_ratio=args.warmup_ratio,
        temperature=args.temperature, query_max_len=args.query_max_len,
        passage_max_len=args.passage_max_len, lora_r=args.lora_r, lora_alpha=args.lora_alpha,
        lora_dropout=args.lora_dropout, lora_target_modules=targets or ["all-linear"],
        self_distill=args.self_distill, gradient_checkpointing=args.gradient_checkpointing,
        precision=args.precision, seed=args.seed, logging_steps=args.logging_steps,
        save_steps=args.save_steps)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # FlagEmbedding's collator pads to the longest with a max_length: harmless, once per step.
    warnings.filterwarnings("ignore", message=".*max_length.*is ignored when.*padding")
    progress = Progress()
    if args.max_steps == 0 or args.max_steps < -1:
        progress.event("error", exit_code=EXIT_USAGE, message="--max_steps must be > 0 or -1")
        return EXIT_USAGE
    try:
        pairs = read_pairs(args.data)
        progress.event("data", **pairs.summary())
        train(params_from_args(args), pairs, Path(args.output), overwrite=args.overwrite,
              keep_checkpoints=args.keep_checkpoints, progress=progress)
    except DataError as exc:
        progress.event("error", exit_code=EXIT_DATA, message=f"bad data: {exc}")
        return EXIT_DATA
    except FinetuneError as exc:
        progress.event("error", exit_code=exc.exit_code, message=str(exc))
        return exc.exit_code
    except Exception as exc:  # noqa: BLE001 - the exit code says "failed", the traceback why
        traceback.print_exc()
        progress.event("error", exit_code=EXIT_FAILED, message=f"{type(exc).__name__}: {exc}")
        return EXIT_FAILED
    return EXIT_OK

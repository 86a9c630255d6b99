"""Packed (unpadded) batches for the GPU: one row of real tokens, variable-length attention.

Why: a padded batch spends its FFN and projection FLOPs on padding and forces SDPA onto a 4-D
boolean mask, which rules out the flash kernel. Packed, as TEI and vLLM do, the batch is one
row of the sequences' real tokens laid end to end with per-sequence positions (XLM-R's
``padding_idx + 1`` offset, as ``create_position_ids_from_input_ids`` gives a padded row), and
attention runs per sequence from the cumulative lengths: PyTorch's own
``torch.nn.attention.varlen.varlen_attn`` (flash) on CUDA, else one SDPA call per sequence.

How it plugs in: :func:`enable` registers one attention implementation with transformers'
attention interface and switches the encoder to it. Called with ``cu_seq_lens_q`` (the packed
path) it runs variable-length attention; called without (the padded path) it is exactly
transformers' SDPA with its SDPA mask, so a padded forward gives what it gave before.

Used only on CUDA (``M3Runner``/``CrossEncoderRunner`` build :class:`PackedM3` /
:class:`PackedReranker` there); CPU behaviour is unchanged. tests/unit/runtime/test_gpu_path.py
checks the packed outputs against the padded path on CPU.

Each packed runner works in three stages, ``prepare`` (host: pack, pin, copy in) → ``forward``
(the device: encoder and heads, copies back queued, an event recorded; no waiting) →
``finish`` (host: wait for the event, post-process), which its ``pipeline``
(runtime/pipeline.py) overlaps across batches; the engine feeds that pipeline
(engine/engine.py). ``run_batch`` runs the three in a row (warm-up, direct callers).
"""

from __future__ import annotations

import functools
import logging
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from predictor.core.types import Embedding, EncodeItem, Output, ScoreItem
from predictor.runtime import packed_sparse
from predictor.runtime.pipeline import DEPTH, Pipeline
from predictor.runtime.runner_base import releasing_cuda_memory

if TYPE_CHECKING:
    from predictor.runtime.cross_encoder import CrossEncoderRunner
    from predictor.runtime.m3 import M3Runner

logger = logging.getLogger(__name__)

ATTENTION = "bge_packed"
#: Model types whose positions start after the padding index (XLM-R, RoBERTa, CamemBERT).
_OFFSET_POSITIONS = {"xlm-roberta", "roberta", "camembert"}
_registered = threading.Lock()
_done = False
_varlen_failed = False


def _register() -> None:
    global _done
    with _registered:
        if _done:
            return
        from transformers import AttentionInterface
        from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

        def mask(*args, attention_mask=None, **kwargs):
            # Packed calls have no mask: do not let a mask factory build a T x T one.
            if attention_mask is None:
                return None
            return sdpa_mask(*args, attention_mask=attention_mask, **kwargs)

        AttentionInterface.register(ATTENTION, packed_attention)
        AttentionMaskInterface.register(ATTENTION, mask)
        _done = True


def packed_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0,
                     **kwargs):
    """transformers' attention signature; ``query`` is (batch, heads, tokens, head_dim)."""
    cu = kwargs.get("cu_seq_lens_q")
    if cu is None:
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        return sdpa_attention_forward(module, query, key, value, attention_mask,
                                      scaling=scaling, dropout=dropout, **kwargs)
    max_len = int(kwargs["max_length_q"])
    q, k, v = (t[0].transpose(0, 1) for t in (query, key, value))  # (tokens, heads, dim)
    out = varlen_attention(q, k, v, cu, max_len, scaling)
    return out.unsqueeze(0), None  # (1, tokens, heads, dim), as transformers' SDPA returns


def varlen_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cu: torch.Tensor,
                     max_len: int, scaling: float | None) -> torch.Tensor:
    """Attention within each sequence of a packed (tokens, heads, dim) batch."""
    if q.is_cuda and q.dtype in (torch.float16, torch.bfloat16) and (
            scaling is None or abs(scaling - q.shape[-1] ** -0.5) < 1e-12):  # flash's terms
        global _varlen_failed
        try:
            from torch.nn.attention.varlen import varlen_attn
        except ImportError:  # torch without it: the per-sequence loop below
            varlen_attn = None
        if varlen_attn is not None and not _varlen_failed:
            try:
                return varlen_attn(q, k, v, cu, cu, max_len, max_len)
            except RuntimeError:  # e.g. a GPU its kernels do not support: loop from now on
                _varlen_failed = True
                logger.warning("varlen_attn failed; attention runs per sequence", exc_info=True)
    return attention_per_sequence(q, k, v, cu, scaling)


@torch.library.custom_op("bge_predictor::attention_per_sequence", mutates_args=())
def attention_per_sequence(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                           cu: torch.Tensor, scaling: float | None) -> torch.Tensor:
    """One SDPA call per sequence: where ``varlen_attn`` cannot run (CPU, fp32, no kernel).

    An operator of its own (``torch.library``) so that ``torch.compile`` sees one opaque call
    of a known output shape instead of tracing a Python loop over the sequences, which would
    compile again for every new number of sequences."""
    bounds = cu.tolist()
    out = torch.empty_like(q)
    for start, end in zip(bounds[:-1], bounds[1:], strict=True):
        qs, ks, vs = (t[start:end].transpose(0, 1) for t in (q, k, v))  # (heads, n, dim)
        out[start:end] = F.scaled_dot_product_attention(qs, ks, vs, scale=scaling)\
            .transpose(0, 1)
    return out


@attention_per_sequence.register_fake
def _(q, k, v, cu, scaling):
    return torch.empty_like(q)


@dataclass
class Packed:
    """A batch as one row: ids and positions (1, T), cumulative lengths (N + 1,) int32, on the
    device; the lengths on the host too (post-processing reads them there)."""

    input_ids: torch.Tensor
    position_ids: torch.Tensor
    cu_seqlens: torch.Tensor
    max_len: int
    lengths: np.ndarray

    def kwargs(self) -> dict:
        return {"input_ids": self.input_ids, "position_ids": self.position_ids,
                "cu_seq_lens_q": self.cu_seqlens, "cu_seq_lens_k": self.cu_seqlens,
                "max_length_q": self.max_len, "max_length_k": self.max_len}


def pack(sequences: Sequence[Sequence[int]], position_offset: int, device: str) -> Packed:
    """Lay the sequences end to end (vectorised: no per-token Python loop)."""
    lengths = np.fromiter((len(s) for s in sequences), dtype=np.int64, count=len(sequences))
    if lengths.size == 0 or lengths.min() < 1:
        raise ValueError("every sequence needs at least one token")
    ids = np.fromiter((t for s in sequences for t in s), dtype=np.int64, count=int(lengths.sum()))
    cu = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=cu[1:])
    starts = cu[:-1]
    positions = np.arange(cu[-1], dtype=np.int64) - np.repeat(starts, lengths) + position_offset
    return Packed(input_ids=to_device(ids, torch.long, device)[None],
                  position_ids=to_device(positions, torch.long, device)[None],
                  cu_seqlens=to_device(cu, torch.int32, device), max_len=int(lengths.max()),
                  lengths=lengths)


def to_device(a: np.ndarray, dtype: torch.dtype, device: str) -> torch.Tensor:
    """A host array on ``device``: through pinned memory, without waiting, to a GPU."""
    t = torch.from_numpy(a).to(dtype)
    if device == "cpu":
        return t
    return t.pin_memory().to(device, non_blocking=True)


def after_first_rows(lengths: np.ndarray) -> np.ndarray:
    """Positions in a packed row of every token but each sequence's first (ColBERT's rows),
    computed on the host: a boolean selection on the device would wait for it."""
    keep = np.ones(int(lengths.sum()), dtype=bool)
    keep[np.cumsum(lengths) - lengths] = False
    return np.flatnonzero(keep)


def position_offset(config) -> int:
    """Where a sequence's positions start: ``padding_idx + 1`` for XLM-R-style models."""
    if getattr(config, "model_type", "") in _OFFSET_POSITIONS:
        return int(config.pad_token_id) + 1
    return 0


def enable(encoder: torch.nn.Module) -> None:
    """Switch ``encoder`` (a transformers model) to :func:`packed_attention`."""
    _register()
    encoder.set_attn_implementation(ATTENTION)


def enabled(device: str) -> bool:
    """Packed batches on CUDA, unless ``BGE_PREDICTOR_PACKED=0`` (then the padded path);
    ``always`` packs on any device (the CPU tests drive the packed path over HTTP with it)."""
    mode = os.environ.get("BGE_PREDICTOR_PACKED", "1").strip().lower()
    if mode == "always":
        return True
    return device.startswith("cuda") and mode not in ("0", "false", "off")


def for_m3(runner: M3Runner, compile: bool = False) -> PackedM3 | None:
    return _build(PackedM3, runner, compile) if enabled(runner.device) else None


def for_reranker(runner: CrossEncoderRunner, compile: bool = False) -> PackedReranker | None:
    if enabled(runner.device) and PackedReranker.supports(runner):
        return _build(PackedReranker, runner, compile)
    return None


def _build(cls, runner, compile: bool):
    """The packed runner, or None (the padded path) where this transformers cannot take our
    attention function: packing is an optimisation, never a reason not to serve."""
    try:
        built = cls(runner, compile)
    except Exception:
        logger.warning("packed batches unavailable for %s; padded batches instead",
                       type(runner).__name__, exc_info=True)
        return None
    logger.info("%s on %s: packed batches%s", type(runner).__name__, runner.device,
                ", torch.compile (compiled during the warm-up)" if compile else "")
    return built


def compiled(encoder: torch.nn.Module) -> torch.nn.Module:
    """``encoder`` under ``torch.compile`` with dynamic shapes: one compilation serves every
    packed length and number of sequences (attention is one operator either way). The first
    call compiles (the warm-up's, before ready); state dict and attributes stay the
    encoder's."""
    return torch.compile(encoder, dynamic=True)


@dataclass
class Launched:
    """A batch whose forward is queued on the device: its host copies (valid once ``done`` has
    completed), the events around its kernels, what ``finish`` needs of its inputs."""

    items: Sequence
    packed: Packed
    out: dict
    started: float  # time.monotonic() when the forward began
    forwarded: float  # ... when it had queued everything (on CPU: when it was done)
    start_event: torch.cuda.Event | None = None
    done: torch.cuda.Event | None = None

    def wait(self) -> float:
        """Block until the device is done with the batch; its forward time in seconds (the
        device's own, between the events, on CUDA)."""
        if self.done is None:
            return self.forwarded - self.started
        self.done.synchronize()
        return self.start_event.elapsed_time(self.done) / 1000.0


class PackedStages:
    """What both packed runners share: the three stages in a row (``run_batch``), the
    pipeline over them (``pipeline``, built on first use), events and stage timing."""

    def __init__(self, runner):
        self.runner = runner
        self.depth = pipeline_depth()
        self._pipeline: Pipeline | None = None
        self._pipeline_lock = threading.Lock()

    def prepare(self, items: Sequence) -> tuple:
        raise NotImplementedError

    def forward(self, prepared: tuple) -> Launched:
        raise NotImplementedError

    def finish(self, launched: Launched) -> list:
        raise NotImplementedError

    def run_batch(self, items: Sequence) -> list:
        return self.finish(self._forward(self.prepare(items)))

    def stages(self) -> tuple:
        """(prepare, forward, finish) for :class:`predictor.runtime.pipeline.Pipeline`."""
        return self.prepare, self._forward, self.finish

    @property
    def pipeline(self) -> Pipeline | None:
        """The stages on three threads, overlapping across batches (built on first use); None
        where ``BGE_PREDICTOR_PIPELINE=0`` (then the engine runs one batch at a time)."""
        if not self.depth:
            return None
        with self._pipeline_lock:
            if self._pipeline is None:
                device = self.runner.device
                self._pipeline = Pipeline(*self.stages(),
                                          name=f"{type(self).__name__}-{device}",
                                          forward_setup=functools.partial(_use_device, device),
                                          depth=self.depth)
            return self._pipeline

    def _forward(self, prepared: tuple) -> Launched:
        with releasing_cuda_memory():  # an OOM is retried in halves by the engine
            return self.forward(prepared)

    def _launch(self) -> tuple[float, torch.cuda.Event | None]:
        """Start timing a forward: the wall clock, and on CUDA an event before its kernels."""
        event = None
        if self.runner.device.startswith("cuda"):
            event = torch.cuda.Event(enable_timing=True)
            event.record()
        return time.monotonic(), event

    def _launched(self, items, p: Packed, out: dict, started: float,
                  start_event: torch.cuda.Event | None) -> Launched:
        done = None
        if start_event is not None:
            done = torch.cuda.Event(enable_timing=True)
            done.record()
        return Launched(items, p, out, started, time.monotonic(), start_event, done)

    def _observe(self, forward_s: float, finish_started: float) -> None:
        if self.runner.observe_stage is not None:
            self.runner.observe_stage("forward", forward_s)
            self.runner.observe_stage("postprocess", time.monotonic() - finish_started)


def pipeline_depth() -> int:
    """``BGE_PREDICTOR_PIPELINE``: ``0``/``off``/``false`` none, a number the batches in
    flight, unset the default (``pipeline.DEPTH``)."""
    value = os.environ.get("BGE_PREDICTOR_PIPELINE", "").strip().lower()
    if value in ("0", "off", "false"):
        return 0
    if value.isdigit():
        return int(value)
    if value:
        logger.warning("BGE_PREDICTOR_PIPELINE=%r is no depth; using %d", value, DEPTH)
    return DEPTH


def _use_device(device: str) -> None:
    """On the pipeline's forward thread: make ``device`` current, so events and kernels that
    name no device land on the model's GPU."""
    if device.startswith("cuda:"):
        torch.cuda.set_device(device)


class PackedM3(PackedStages):
    """``M3Runner.run_batch`` on packed batches: same outputs, heads applied to real tokens,
    sparse weights reduced for the whole batch on the device (packed_sparse.py), ColBERT
    copied back in the model's dtype. Nothing in ``forward`` waits for the device (no
    boolean selection, no size read back), so its thread queues the next batch at once.
    Called by its ``M3Runner`` (not a runner of its own): the stages it reports are the
    runner's."""

    def __init__(self, runner: M3Runner, compile: bool = False):
        super().__init__(runner)
        self.flag = runner.model  # FlagEmbedding's (or flag_free's) M3 model
        enable(self.flag.model)
        self.encoder = compiled(self.flag.model) if compile else self.flag.model
        self.offset = position_offset(self.flag.model.config)
        self.unused = torch.as_tensor(runner.unused_token_ids, dtype=torch.long,
                                      device=runner.device)

    def prepare(self, items: Sequence[EncodeItem]) -> tuple:
        """Host: the batch packed (pinned and copied on CUDA), the union of its outputs, and
        for ColBERT the rows it reads."""
        wanted = frozenset().union(*(item.outputs for item in items))
        p = pack([item.input_ids for item in items], self.offset, self.runner.device)
        colbert_rows = None
        if Output.COLBERT in wanted:
            colbert_rows = to_device(after_first_rows(p.lengths), torch.long, self.runner.device)
        return items, wanted, p, colbert_rows

    @torch.inference_mode()
    def forward(self, prepared: tuple) -> Launched:
        """Device: encoder and heads on real tokens; results queued back to the host."""
        items, wanted, p, colbert_rows = prepared
        started, start_event = self._launch()
        hidden = self.encoder(**p.kwargs(), return_dict=True).last_hidden_state[0]
        cls_rows = p.cu_seqlens[:-1].long()
        out: dict = {}
        if Output.DENSE in wanted:
            out["dense"] = _to_host(F.normalize(hidden[cls_rows].float(), dim=-1))
        if Output.SPARSE in wanted:
            weights = torch.relu(self.flag.sparse_linear(hidden)).squeeze(-1).float()
            reduced = packed_sparse.reduce_on_device(p.input_ids[0], weights, p.cu_seqlens,
                                                     self.unused)
            out["sparse"] = tuple(_to_host(t) for t in (reduced.keys, reduced.firsts,
                                                        reduced.maxima))
        if Output.COLBERT in wanted:
            vecs = F.normalize(self.flag.colbert_linear(hidden[colbert_rows]).float(), dim=-1)
            out["colbert"] = _to_host(vecs.to(hidden.dtype))  # fp16 on the wire from a GPU
        return self._launched(items, p, out, started, start_event)

    def finish(self, launched: Launched) -> list[Embedding]:
        """Host: wait for the copies, then one Embedding per item."""
        forward_s = launched.wait()
        finish_started = time.monotonic()
        items, p, out = launched.items, launched.packed, launched.out
        dense = out["dense"].numpy() if "dense" in out else None
        colbert = out["colbert"].numpy().astype(np.float32, copy=False) \
            if "colbert" in out else None
        sparse = packed_sparse.split_rows(*(t.numpy() for t in out["sparse"]), len(items)) \
            if "sparse" in out else None
        results = []
        col_start = 0
        for row, item in enumerate(items):
            n = int(p.lengths[row])
            emb = Embedding(num_tokens=n)
            if Output.DENSE in item.outputs:
                emb.dense = dense[row]
            if Output.SPARSE in item.outputs:
                emb.sparse = sparse[row]
            if Output.COLBERT in item.outputs:
                emb.colbert = colbert[col_start: col_start + n - 1]
            col_start += n - 1
            results.append(emb)
        self._observe(forward_s, finish_started)
        return results


def _to_host(tensor: torch.Tensor) -> torch.Tensor:
    """A copy on the host: queued into pinned memory from a GPU (wait on an event before
    reading it), the tensor itself on CPU."""
    if not tensor.is_cuda:
        return tensor
    host = torch.empty(tensor.shape, dtype=tensor.dtype, pin_memory=True)
    host.copy_(tensor, non_blocking=True)
    return host


class PackedReranker(PackedStages):
    """``CrossEncoderRunner.run_batch`` on packed batches, for XLM-R-style classifiers whose
    head reads the first token (``features[:, 0]``): bge-reranker-v2-m3 and its kind."""

    def __init__(self, runner: CrossEncoderRunner, compile: bool = False):
        super().__init__(runner)
        model = runner.model
        enable(model.base_model)
        self.base = compiled(model.base_model) if compile else model.base_model
        self.classifier = model.classifier
        self.offset = position_offset(model.config)

    @staticmethod
    def supports(runner: CrossEncoderRunner) -> bool:
        model = runner.model
        return (runner.sep_id is None
                and getattr(model.config, "model_type", "") in _OFFSET_POSITIONS
                and hasattr(model, "classifier") and model.base_model is not model)

    def prepare(self, items: Sequence[ScoreItem]) -> tuple:
        return items, pack([item.input_ids for item in items], self.offset, self.runner.device)

    @torch.inference_mode()
    def forward(self, prepared: tuple) -> Launched:
        items, p = prepared
        started, start_event = self._launch()
        hidden = self.base(**p.kwargs(), return_dict=True).last_hidden_state[0]
        firsts = hidden[p.cu_seqlens[:-1].long()]
        logits = self.classifier(firsts[:, None, :]).view(-1).float()
        return self._launched(items, p, {"logits": _to_host(logits)}, started, start_event)

    def finish(self, launched: Launched) -> list[float]:
        forward_s = launched.wait()
        finish_started = time.monotonic()
        scores = launched.out["logits"].numpy().astype(np.float64).tolist()
        self._observe(forward_s, finish_started)
        return scores

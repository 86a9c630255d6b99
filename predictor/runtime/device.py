"""Device and dtype choice shared by the runners.

``--dtype auto`` runs float16 on CUDA, bfloat16 on a CPU that computes bf16 natively
(AVX512-BF16 or AMX, as torch reports it) and float32 elsewhere: without native bf16 the CPU
emulates it and is slower than float32. How bfloat16 runs was chosen by measurement
(docs/benchmarks.md, "CPU dtypes"): the encoder's Linear weights are stored in bf16 and run
under autocast, while embeddings, LayerNorm and the residual stream stay float32 and the heads
(pooling, sparse, ColBERT, classifier) see float32 hidden states. That is as exact as plain
autocast (which re-casts every weight on every call, and is slower) and keeps the sparse
weights within 1% of float32, which casting the whole model does not. int8 runs the encoder
in ONNX Runtime (runtime/int8.py), on request only.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

logger = logging.getLogger(__name__)

DTYPES = ("auto", "float32", "bfloat16", "float16", "int8")
_TORCH = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_device(device: str | None) -> str:
    if device:
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"


def use_half(device: str, use_fp16: bool) -> bool:
    """fp16 only on CUDA: on CPU it is slower and less exact, so it is ignored there."""
    return use_fp16 and device.startswith("cuda")


def cpu_native_bf16() -> str | None:
    """The CPU feature that computes bfloat16 natively (``amx_bf16``, ``avx512_bf16``), as
    torch detects it, or None."""
    try:
        caps = torch.cpu.get_capabilities()
    except (AttributeError, RuntimeError):  # an older torch: ask oneDNN's coarser check
        return None
    for feature in ("amx_bf16", "avx512_bf16", "bf16"):  # "bf16": Arm's FEAT_BF16
        if caps.get(feature):
            return feature
    return None


@dataclass(frozen=True)
class Precision:
    """The dtype a model runs in and why (start-up log, ``/stats``)."""

    dtype: str  # float32 | bfloat16 | float16 | int8
    reason: str

    @property
    def half(self) -> bool:
        """float16 the way FlagEmbedding's ``use_fp16`` does it: the whole model cast."""
        return self.dtype == "float16"

    def describe(self) -> dict:
        return {"dtype": self.dtype, "dtype_reason": self.reason}


def resolve_precision(requested: str, device: str, use_fp16: bool = True) -> Precision:
    """What ``--dtype requested`` (and the legacy ``--use_fp16``) means on ``device``."""
    cuda = device.startswith("cuda")
    if requested not in DTYPES:
        raise ValueError(f"unknown dtype {requested!r}; one of {', '.join(DTYPES)}")
    if requested == "auto":
        if cuda:
            if not use_fp16:
                return Precision("float32", "auto on CUDA with --use_fp16 false")
            return Precision("float16", "auto on CUDA")
        if device != "cpu":
            return Precision("float32", f"auto on {device}")
        feature = cpu_native_bf16()
        if feature:
            return Precision("bfloat16", f"auto: this CPU computes bf16 natively ({feature})")
        return Precision("float32", "auto: this CPU has no native bf16 (AVX512-BF16 or AMX), "
                                    "where bf16 would be emulated and slower")
    if requested == "int8" and device != "cpu":
        raise ValueError("--dtype int8 runs on CPU only (ONNX Runtime's int8 kernels); on "
                         "CUDA use float16")
    if requested == "bfloat16" and device == "cpu" and not cpu_native_bf16():
        logger.warning("--dtype bfloat16 on a CPU without native bf16: emulated, expect it to "
                       "be slower than float32")
    if requested == "float16" and device == "cpu":
        logger.warning("--dtype float16 on CPU: few CPUs compute float16 natively; bfloat16 "
                       "is the CPU's half precision")
    return Precision(requested, "requested")


class LowPrecisionEncoder(torch.nn.Module):
    """Runs an encoder in ``dtype`` and hands its hidden states on in float32.

    Only the ``Linear`` weights are stored in ``dtype`` (half their memory); the forward runs
    under autocast, so matrix products run in ``dtype`` while embeddings, LayerNorm and the
    residual additions stay float32. ``last_hidden_state`` comes out float32, so the heads
    that follow (kept float32) compute exactly as they do in a float32 model.
    """

    def __init__(self, encoder: torch.nn.Module, dtype: torch.dtype, device_type: str):
        super().__init__()
        self.encoder = encoder
        self.dtype = dtype
        self.device_type = device_type
        for module in encoder.modules():
            if isinstance(module, torch.nn.Linear):
                module.to(dtype)

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:  # config, embeddings, ...: the wrapped encoder's
            return getattr(super().__getattr__("encoder"), name)

    def forward(self, *args, **kwargs):
        with torch.autocast(self.device_type, dtype=self.dtype):
            out = self.encoder(*args, **kwargs)
        out.last_hidden_state = out.last_hidden_state.float()
        return out


def apply_precision(model: torch.nn.Module, precision: Precision, device: str,
                    encoder_attr: str | None = None, source: str = "") -> torch.nn.Module:
    """``model`` set up to run in ``precision`` on ``device`` (eval mode).

    ``encoder_attr``: the attribute holding the transformer whose hidden states feed the
    model's own heads (FlagEmbedding's M3 ``model``, a classifier's ``base_model_prefix``);
    None when ``model`` is the encoder itself (the result is then the wrapper).
    ``source``: where the model was loaded from (keys int8's cached graph).
    """
    if precision.dtype == "float16":
        return model.half().to(device).eval()
    model = model.float().to(device).eval()
    if precision.dtype == "bfloat16":
        def wrap(encoder):
            return LowPrecisionEncoder(encoder, torch.bfloat16, device.split(":")[0])
    elif precision.dtype == "int8":
        from predictor.runtime.int8 import OnnxInt8Encoder
        from predictor.runtime.threads import torch_threads

        def wrap(encoder):
            return OnnxInt8Encoder(encoder, source, torch_threads())
    else:
        return model
    if encoder_attr is None:
        return wrap(model).eval()
    setattr(model, encoder_attr, wrap(getattr(model, encoder_attr)))
    return model.eval()


def pad_batch(sequences: list[list[int]], pad_id: int, device: str):
    """Right-pad token id lists into (input_ids, attention_mask) tensors on ``device``."""
    width = max(len(seq) for seq in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        ids[row, : len(seq)] = torch.as_tensor(seq, dtype=torch.long)
        mask[row, : len(seq)] = 1
    if device != "cpu":
        ids = ids.pin_memory().to(device, non_blocking=True)
        mask = mask.pin_memory().to(device, non_blocking=True)
    return ids, mask

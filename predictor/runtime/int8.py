"""``--dtype int8`` on CPU: the encoder runs in ONNX Runtime with int8 weights.

Chosen by measurement over torchao (docs/benchmarks.md, "CPU dtypes"): torchao's int8
dynamic quantisation runs its eager CPU path 3x slower than float32 here, and torch's own
``torch.ao`` dynamic quantisation is deprecated. ONNX Runtime's dynamic quantisation (int8
weights, activations quantised per call, VNNI kernels) is maintained and fast on CPU.

The transformer is exported once to ONNX (torch's exporter), quantised with
``onnxruntime.quantization.quantize_dynamic`` and cached on disk, keyed by the weights' path,
size and mtime; later starts load the cached graph. The model's heads (pooling, sparse,
ColBERT, classifier) stay in torch, in float32: only the encoder is replaced.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import time
from pathlib import Path

import torch

logger = logging.getLogger(__name__)


def require_onnxruntime() -> None:
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError as exc:
        raise RuntimeError("--dtype int8 needs ONNX Runtime: pip install "
                           "'bge-predictor[int8]' (onnxruntime, onnx)") from exc


def cache_root() -> Path:
    base = os.environ.get("INT8_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "bge-predictor",
        "int8")
    return Path(base)


def _fingerprint(encoder: torch.nn.Module, source: str) -> str:
    """What makes a cached graph valid: the source, its weight files' sizes and mtimes, and
    the encoder's class and shape."""
    path = Path(source)
    parts = [type(encoder).__name__, str(encoder.config.to_json_string()),
             str(path.resolve()) if path.is_dir() else source]
    if path.is_dir():
        for item in sorted(path.iterdir()):
            if item.is_file() and item.suffix in {".safetensors", ".bin", ".pt"}:
                stat = item.stat()
                parts.append(f"{item.name}:{stat.st_size}:{stat.st_mtime_ns}")
    parts.append(torch.__version__)
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:24]


def _input_names(encoder: torch.nn.Module) -> list[str]:
    names = ["input_ids", "attention_mask"]
    if int(getattr(encoder.config, "type_vocab_size", 1) or 1) > 1:
        names.append("token_type_ids")
    return names


def quantized_graph(encoder: torch.nn.Module, source: str) -> Path:
    """The int8 ONNX file of ``encoder`` (exported and quantised on first use, then cached)."""
    require_onnxruntime()
    from onnxruntime.quantization import QuantType, quantize_dynamic

    target = cache_root() / f"{_fingerprint(encoder, source)}.int8.onnx"
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    names = _input_names(encoder)
    example = torch.ones((2, 8), dtype=torch.long)
    inputs = tuple(example if n != "token_type_ids" else torch.zeros_like(example)
                   for n in names)
    axes = {n: {0: "batch", 1: "tokens"} for n in names}
    axes["last_hidden_state"] = {0: "batch", 1: "tokens"}

    class _Hidden(torch.nn.Module):  # positional inputs, the hidden states out
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, *args):
            return self.inner(**dict(zip(names, args, strict=True)),
                              return_dict=True).last_hidden_state

    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        fp32 = Path(tmp) / "model.onnx"
        quantized = Path(tmp) / "model.int8.onnx"
        with torch.inference_mode():
            torch.onnx.export(_Hidden(encoder.float().eval()), inputs, str(fp32), dynamo=False,
                              input_names=names, output_names=["last_hidden_state"],
                              dynamic_axes=axes, opset_version=17)
        quantize_dynamic(str(fp32), str(quantized), weight_type=QuantType.QInt8,
                         per_channel=True)
        os.replace(quantized, target)  # complete files only: a crash leaves no half graph
    logger.info("int8: exported and quantised the encoder in %.1fs (cached at %s)",
                time.monotonic() - started, target)
    return target


class OnnxInt8Encoder(torch.nn.Module):
    """Stands in for a transformers encoder: same call, ``last_hidden_state`` in float32."""

    def __init__(self, encoder: torch.nn.Module, source: str, threads: int | None = None):
        super().__init__()
        import onnxruntime as ort

        self.config = encoder.config
        self.names = _input_names(encoder)
        path = quantized_graph(encoder, source)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(path), options,
                                            providers=["CPUExecutionProvider"])
        self.graph = path

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, **_ignored):
        from transformers.modeling_outputs import BaseModelOutput

        feed = {"input_ids": input_ids, "attention_mask": attention_mask,
                "token_type_ids": token_type_ids if token_type_ids is not None
                else torch.zeros_like(input_ids)}
        arrays = {n: feed[n].cpu().numpy() for n in self.names}
        (hidden,) = self.session.run(["last_hidden_state"], arrays)
        return BaseModelOutput(last_hidden_state=torch.from_numpy(hidden).float())

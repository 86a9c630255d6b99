"""From token vectors to a sentence vector: pooling (as sentence-transformers' ``Pooling``)
and the model's sentence-transformers ``Dense`` layers (``DenseRunner`` applies them in order,
then normalises when its family says so).
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence

import torch

from predictor.runtime.model_files import model_file
from predictor.runtime.st_files import POOLING_MODES, DenseLayerSpec

__all__ = ["POOLING_MODES", "load_dense_layer", "pool"]


def pool(hidden: torch.Tensor, mask: torch.Tensor, modes: Sequence[str]) -> torch.Tensor:
    """Sentence vectors from right-padded token vectors, as sentence-transformers' Pooling."""
    mask_f = mask.unsqueeze(-1).to(hidden.dtype)
    counts = torch.clamp(mask_f.sum(dim=1), min=1e-9)
    out = []
    for mode in modes:
        if mode == "cls":
            out.append(hidden[:, 0])
        elif mode == "max":
            out.append(hidden.masked_fill(mask_f == 0, float("-inf")).max(dim=1).values)
        elif mode == "mean":
            out.append((hidden * mask_f).sum(dim=1) / counts)
        elif mode == "mean_sqrt_len_tokens":
            out.append((hidden * mask_f).sum(dim=1) / torch.sqrt(counts))
        elif mode == "weightedmean":
            weights = torch.arange(1, hidden.shape[1] + 1, device=hidden.device,
                                   dtype=hidden.dtype).view(1, -1, 1) * mask_f
            out.append((hidden * weights).sum(dim=1) / torch.clamp(weights.sum(dim=1), min=1e-9))
        elif mode == "lasttoken":
            last = mask.sum(dim=1).long() - 1
            out.append(hidden[torch.arange(hidden.shape[0], device=hidden.device), last])
        else:
            raise ValueError(f"unknown pooling mode {mode!r}")
    return out[0] if len(out) == 1 else torch.cat(out, dim=-1)


def _activation(path: str) -> torch.nn.Module:
    """A ``torch.nn`` activation class by dotted path (nothing outside torch is imported)."""
    if not path.startswith("torch."):
        raise ValueError(f"activation function {path!r} is not a torch.nn module")
    module, _, name = path.rpartition(".")
    cls = getattr(importlib.import_module(module), name)
    if not (isinstance(cls, type) and issubclass(cls, torch.nn.Module)):
        raise ValueError(f"activation function {path!r} is not a torch.nn module")
    return cls()


def load_dense_layer(model: str, spec: DenseLayerSpec) -> torch.nn.Module:
    linear = torch.nn.Linear(spec.in_features, spec.out_features, bias=spec.bias)
    prefix = f"{spec.folder}/" if spec.folder else ""
    weights = model_file(model, prefix + "model.safetensors")
    if weights is not None:
        from safetensors.torch import load_file

        state = load_file(str(weights))
    else:
        weights = model_file(model, prefix + "pytorch_model.bin")
        if weights is None:
            raise FileNotFoundError(f"{model}: no weights for Dense module {spec.folder!r}")
        state = torch.load(str(weights), map_location="cpu", weights_only=True)
    state = {key.removeprefix("linear."): value for key, value in state.items()
             if key.startswith("linear.")}
    linear.load_state_dict(state)
    return torch.nn.Sequential(linear, _activation(spec.activation))

"""A sentence-transformers model's own description of itself: ``modules.json``,
``1_Pooling/config.json``, ``2_Dense``, ``2_Normalize``, ``sentence_bert_config.json`` and
``config_sentence_transformers.json`` (prompts), parsed into ``SentenceTransformersFiles``.

``family_defaults.dense_config`` lets these win over a family's defaults: they are the model's
own statement.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from predictor.runtime.model_files import read_json

#: sentence-transformers' ``Pooling`` modes (``pooling.pool`` computes each).
POOLING_MODES = ("cls", "max", "mean", "mean_sqrt_len_tokens", "weightedmean", "lasttoken")


@dataclass(frozen=True)
class DenseLayerSpec:
    """A sentence-transformers ``Dense`` module: Linear + activation, weights in ``folder``."""

    folder: str
    in_features: int
    out_features: int
    bias: bool = True
    activation: str = "torch.nn.modules.activation.Tanh"


@dataclass(frozen=True)
class SentenceTransformersFiles:
    """What a sentence-transformers directory says about itself (``modules.json`` & co)."""

    transformer_folder: str = ""
    pooling: tuple[str, ...] | None = None
    include_prompt: bool = True
    dense_layers: tuple[DenseLayerSpec, ...] = ()
    normalize: bool = False
    prompts: dict[str, str] = field(default_factory=dict)
    default_prompt_name: str | None = None
    max_seq_length: int | None = None
    do_lower_case: bool = False


_LEGACY_POOLING_KEYS = {
    "pooling_mode_cls_token": "cls", "pooling_mode_max_tokens": "max",
    "pooling_mode_mean_tokens": "mean", "pooling_mode_mean_sqrt_len_tokens":
    "mean_sqrt_len_tokens", "pooling_mode_weightedmean_tokens": "weightedmean",
    "pooling_mode_lasttoken": "lasttoken"}


def pooling_from_config(config: dict) -> tuple[str, ...]:
    """``1_Pooling/config.json``: the new ``pooling_mode`` key or the legacy boolean keys."""
    mode = config.get("pooling_mode")
    if mode is None:
        modes = tuple(m for key, m in _LEGACY_POOLING_KEYS.items() if config.get(key))
        return modes or ("mean",)
    modes = (mode,) if isinstance(mode, str) else tuple(mode)
    for m in modes:
        if m not in POOLING_MODES:
            raise ValueError(f"unknown pooling mode {m!r} in the model's pooling config")
    return modes


def read_sentence_transformers(model: str) -> SentenceTransformersFiles | None:
    """Parse ``modules.json`` and the module configs; None if the model has no modules.json.

    Supported modules: Transformer, Pooling, Dense, Normalize (what BGE, E5, GTE and most
    sentence-transformers embedders use). Anything else is refused rather than ignored.
    """
    modules = read_json(model, "modules.json")
    if modules is None:
        return None
    out: dict = {"dense_layers": []}
    for module in sorted(modules, key=lambda m: m.get("idx", 0)):
        kind = str(module.get("type", "")).rsplit(".", 1)[-1]
        folder = str(module.get("path", "") or "").strip("/")
        prefix = f"{folder}/" if folder else ""
        if kind == "Transformer":
            out["transformer_folder"] = folder
            st_config = read_json(model, prefix + "sentence_bert_config.json") or {}
            if st_config.get("max_seq_length"):
                out["max_seq_length"] = int(st_config["max_seq_length"])
            out["do_lower_case"] = bool(st_config.get("do_lower_case", False))
        elif kind == "Pooling":
            config = read_json(model, prefix + "config.json") or {}
            out["pooling"] = pooling_from_config(config)
            out["include_prompt"] = bool(config.get("include_prompt", True))
        elif kind == "Dense":
            config = read_json(model, prefix + "config.json") or {}
            if config.get("use_residual"):
                raise ValueError(f"{model}: Dense module {folder!r} with use_residual is not "
                                 "supported")
            out["dense_layers"].append(DenseLayerSpec(
                folder=folder, in_features=int(config["in_features"]),
                out_features=int(config["out_features"]), bias=bool(config.get("bias", True)),
                activation=str(config.get("activation_function",
                                          "torch.nn.modules.activation.Tanh"))))
        elif kind == "Normalize":
            out["normalize"] = True
        else:
            raise ValueError(f"{model}: sentence-transformers module {module.get('type')!r} is "
                             "not supported (only Transformer, Pooling, Dense, Normalize)")
    st = read_json(model, "config_sentence_transformers.json") or {}
    out["prompts"] = {str(k): str(v) for k, v in (st.get("prompts") or {}).items()}
    out["default_prompt_name"] = st.get("default_prompt_name")
    out["dense_layers"] = tuple(out["dense_layers"])
    return SentenceTransformersFiles(**out)

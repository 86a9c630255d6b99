"""Which models one process serves: the SPEC flags, repeatable ``--model`` specs, a config file.

Three sources, merged in this order (the first model of each kind is the default one, used when
a request names no model):

1. ``--embedder`` / ``--reranker`` (SPEC; env ``EMBEDDING_MODEL_NAME`` / ``RERANKER_MODEL_NAME``),
   named ``--embedder_name`` / ``--reranker_name``. Without any ``--model`` or config file they
   behave exactly as before (defaults ``BAAI/bge-m3`` and ``BAAI/bge-reranker-v2-m3``). When
   ``--model`` or ``--models_config`` adds models, these two are served only if set explicitly
   (flag or env) or in ``--demo`` mode, so ``--model name=e5,path=...`` alone serves just e5.
2. ``--models_config FILE`` (env ``MODELS_CONFIG``): YAML or JSON, a list of entries or
   ``{"models": [...]}``; each entry has the keys of :class:`ModelSpec`.
3. ``--model name=e5,kind=embedder,path=intfloat/multilingual-e5-large,aliases=e5-large|me5``,
   repeatable (env ``MODEL_SPECS``, a JSON list of such strings): ``key=value`` pairs
   separated by commas, aliases separated by ``|``.

Names must be unique, and an explicit alias may not be another model's name or alias. Each
model also answers to its short names (``SHORT_NAMES``, seed 003's list); ``resolve_specs`` is
the one place a model's final aliases are computed.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from predictor.settings import Flag, parse_bool

logger = logging.getLogger(__name__)

Kind = Literal["embedder", "reranker"]


# Short names of well-known models (seed 003's list) where they differ from the id's last
# segment; the last segment itself is always an alias (``api/http/registry.aliases_of``).
SHORT_NAMES: dict[str, tuple[str, ...]] = {
    "hotchpotch/japanese-reranker-cross-encoder-large-v1": ("japanese-reranker-large",),
    "hotchpotch/japanese-reranker-cross-encoder-base-v1": ("japanese-reranker-base",),
    "hotchpotch/japanese-reranker-cross-encoder-small-v1": ("japanese-reranker-small",),
    "hotchpotch/japanese-bge-reranker-v2-m3-v1": ("japanese-bge-v2-m3",),
    "jinaai/jina-reranker-v2-base-multilingual": ("jina-reranker-v2-multilingual",),
    "alibaba-nlp/gte-multilingual-reranker-base": ("gte-multilingual-reranker",),
    "mixedbread-ai/mxbai-rerank-large-v1": ("mxbai-rerank-large",),
    "jinaai/jina-reranker-v1-turbo-en": ("jina-reranker-turbo",),
    "mu-kindai/japanese-simcse-bert-large-unsup": ("japanese-simcse-large",),
    "sonoisa/sentence-luke-japanese-base-lite": ("luke-japanese-base",),
    "pkshatech/glucose-base-ja-v2": ("glucose-ja-v2",),
    "nvidia/nv-embed-v2": ("nv-embed-v2",),
    "intfloat/e5-mistral-7b-instruct": ("e5-mistral-7b",),
    "mixedbread-ai/mxbai-embed-large-v1": ("mxbai-embed-large",),
}


def short_names(model_id: str) -> tuple[str, ...]:
    return SHORT_NAMES.get(model_id.strip().rstrip("/").lower(), ())


class ModelSpec(BaseModel):
    """One served model. Only ``path`` is required."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str = Field(min_length=1, description="Local directory or Hugging Face id.")
    name: str | None = Field(None, description="Served name; default: the path's last segment.")
    kind: Kind | None = Field(None, description="embedder or reranker; default: detected "
                              "(a *ForSequenceClassification config is a reranker).")
    aliases: tuple[str, ...] = Field((), description="Other names the 'model' field may use.")
    family: str | None = Field(None, description="Override the detected family "
                               "(bge-m3, bge, e5, e5-instruct, gte, sentence-transformers, "
                               "dense, cross-encoder).")
    pooling: str | None = Field(None, description="Override pooling: cls, mean, max, "
                                "mean_sqrt_len_tokens, weightedmean, lasttoken.")
    normalize: Flag | None = Field(None, description="Override L2 normalisation.")
    query_prefix: str | None = Field(None, description="Override the text put before queries.")
    passage_prefix: str | None = Field(None, description="Override the text put before "
                                       "passages (and texts with no input_type).")
    max_length: int | None = Field(None, gt=0, description="Lower the model's token limit.")
    trust_remote_code: Flag = Field(False, description="Allow the model's own code (HF).")

    @field_validator("aliases", mode="before")
    @classmethod
    def _split_aliases(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.split("|")
        if isinstance(value, list | tuple):
            return tuple(str(v).strip() for v in value if str(v).strip())
        return value

    @field_validator("path", "name")
    @classmethod
    def _strip(cls, value: str | None) -> str | None:
        return value.strip() if isinstance(value, str) else value

    @property
    def served_name(self) -> str:
        return self.name or self.path.rstrip("/").rsplit("/", 1)[-1]


class ModelsConfigError(ValueError):
    """A bad ``--model`` spec or config file; the message says which and why."""


def parse_model_flag(text: str) -> ModelSpec:
    """``name=e5,kind=embedder,path=intfloat/multilingual-e5-large,aliases=e5-large|me5``.

    A bare value with no ``=`` is the path (``--model BAAI/bge-small-en-v1.5``). Values cannot
    contain commas; use the config file for prefixes that do.
    """
    fields: dict[str, Any] = {}
    for i, part in enumerate(p for p in text.split(",") if p.strip()):
        key, sep, value = part.partition("=")
        key = key.strip()
        if not sep:
            if i == 0:
                fields["path"] = key
                continue
            raise ModelsConfigError(f"--model {text!r}: {part!r} is not key=value")
        if key in fields:
            raise ModelsConfigError(f"--model {text!r}: {key!r} given twice")
        fields[key] = value
    for key in ("normalize", "trust_remote_code"):
        if isinstance(fields.get(key), str):
            flag = parse_bool(fields[key])
            if flag is None:
                raise ModelsConfigError(f"--model {text!r}: {key} must be true or false")
            fields[key] = flag
    return _validate(fields, f"--model {text!r}")


def load_models_config(path: str | Path) -> list[ModelSpec]:
    """Entries of a YAML (or JSON) file: a list, or a mapping with a ``models`` list."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ModelsConfigError(f"models config {path}: {exc}") from exc
    try:
        import yaml

        data = yaml.safe_load(text)
    except ImportError:  # pragma: no cover - PyYAML comes with transformers and kserve
        data = json.loads(text)
    except Exception as exc:
        raise ModelsConfigError(f"models config {path}: not valid YAML/JSON: {exc}") from exc
    if isinstance(data, dict):
        unknown = set(data) - {"models"}
        if unknown:
            raise ModelsConfigError(f"models config {path}: unknown top-level keys "
                                    f"{sorted(unknown)}; expected 'models'")
        data = data.get("models")
    if not isinstance(data, list):
        raise ModelsConfigError(f"models config {path}: expected a list of models "
                                "(or {'models': [...]})")
    specs = []
    for i, entry in enumerate(data):
        if not isinstance(entry, dict):
            raise ModelsConfigError(f"models config {path}: models[{i}] is not a mapping")
        specs.append(_validate(entry, f"models config {path}: models[{i}]"))
    return specs


def _validate(fields: dict[str, Any], where: str) -> ModelSpec:
    try:
        return ModelSpec(**fields)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in err['loc']) or 'spec'}: {err['msg']}"
                             for err in exc.errors())
        raise ModelsConfigError(f"{where}: {problems}") from None


def resolve_specs(settings: Any) -> list[ModelSpec]:
    """Every model to serve, in order: SPEC flags, config file, ``--model`` flags.

    ``kind`` may still be None here (detected when the model is loaded). ``aliases`` are final:
    the explicit ones, then the model's short names (``SHORT_NAMES``); the served models only
    read them.
    """
    extra: list[ModelSpec] = []
    if settings.models_config:
        extra += load_models_config(settings.models_config)
    extra += [parse_model_flag(text) for text in settings.model_specs]
    explicit = settings.model_fields_set | ({"embedder", "reranker"} if settings.demo else set())
    specs: list[ModelSpec] = []
    if settings.embedder_enabled and (not extra or "embedder" in explicit):
        specs.append(ModelSpec(path=settings.embedder, name=settings.embedder_name,
                               kind="embedder"))
    if settings.reranker_enabled and (not extra or "reranker" in explicit):
        specs.append(ModelSpec(path=settings.reranker, name=settings.reranker_name,
                               kind="reranker"))
    specs += extra
    check_unique(specs)
    return [spec.model_copy(update={"aliases": tuple(dict.fromkeys(
        (*spec.aliases, *short_names(spec.path))))}) for spec in specs]


def check_unique(specs: list[ModelSpec]) -> None:
    """Names unique; explicit aliases clash with no other model's name or alias."""
    owner: dict[str, str] = {}
    for spec in specs:
        name = spec.served_name
        if name.lower() in owner:
            raise ModelsConfigError(f"two models are named {name!r}; give one another name=")
        owner[name.lower()] = name
    for spec in specs:
        for alias in spec.aliases:
            key = alias.lower()
            if key in owner and owner[key] != spec.served_name:
                raise ModelsConfigError(f"alias {alias!r} of {spec.served_name!r} is already "
                                        f"the name or an alias of {owner[key]!r}")
            owner[key] = spec.served_name

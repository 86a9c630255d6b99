"""Server settings: environment variables with defaults, overridden by command-line flags.

The flags and variables of docs/operations.md (the contract's in docs/api.md), with the engine's
batching knobs. pydantic-settings reads the environment; ``cli.py`` lays non-empty flags over it.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AliasChoices, BeforeValidator, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_EMBEDDER = "BAAI/bge-m3"
DEFAULT_RERANKER = "BAAI/bge-reranker-v2-m3"
# Default padded-token budgets per forward pass (docs/benchmarks.md: on a CPU, 8 texts of 500
# tokens run faster per text than 32).
CPU_BATCH_TOKENS = 4096
GPU_BATCH_TOKENS = 16384


# The one boolean vocabulary (docs/operations.md "Booleans"): flags, environment variables,
# the models config file and V1/V2 request parameters all accept these words, in any case,
# surrounding spaces ignored (pydantic's own set, which also parses JSON request bodies).
TRUE_WORDS = frozenset({"true", "1", "yes", "on", "t", "y"})
FALSE_WORDS = frozenset({"false", "0", "no", "off", "f", "n"})


def parse_bool(value: Any) -> bool | None:
    """A bool, 0/1 or one of the words as a bool; None for anything else (the caller says how
    it is wrong)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        word = value.strip().lower()
        if word in TRUE_WORDS:
            return True
        if word in FALSE_WORDS:
            return False
    return None


def _bool_words(value: Any) -> Any:
    """Words as bools before pydantic's check; anything else goes on to pydantic's own error."""
    parsed = parse_bool(value) if isinstance(value, str) else None
    return value if parsed is None else parsed


#: A boolean field that reads the words above.
Flag = Annotated[bool, BeforeValidator(_bool_words)]


def _env(*names: str) -> AliasChoices:
    return AliasChoices(*names)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(populate_by_name=True, extra="ignore")

    embedder: str = Field(DEFAULT_EMBEDDER,
                          validation_alias=_env("embedder", "EMBEDDING_MODEL_NAME"))
    reranker: str = Field(DEFAULT_RERANKER,
                          validation_alias=_env("reranker", "RERANKER_MODEL_NAME"))
    embedder_name: str = "bge-m3"
    reranker_name: str = "bge-reranker"
    device: str | None = Field(None, validation_alias=_env("device", "DEVICE"))
    # auto: float16 on CUDA, bfloat16 on a CPU with native bf16, else float32 (runtime/device.py)
    dtype: Literal["auto", "float32", "bfloat16", "float16", "int8"] = Field(
        "auto", validation_alias=_env("dtype", "DTYPE"))
    # Legacy alias: with dtype auto, false means float32 on CUDA; ignored on CPU.
    use_fp16: Flag = Field(True, validation_alias=_env("use_fp16", "USE_FP16"))
    api_token: str | None = Field(None, validation_alias=_env("api_token", "API_TOKEN"))
    sparse_token_mapping: Literal["tokenizer", "hash"] = Field(
        "tokenizer", validation_alias=_env("sparse_token_mapping", "SPARSE_TOKEN_MAPPING"))
    sparse_index_space: int = Field(
        1 << 20, gt=0, validation_alias=_env("sparse_index_space", "SPARSE_INDEX_SPACE"))

    # Engine: dynamic batching on a padded-token budget.
    # None: by device (batch_tokens_for). On CPU big batches of long texts are slower per text.
    max_batch_tokens: int | None = Field(
        None, gt=0, validation_alias=_env("max_batch_tokens", "MAX_BATCH_TOKENS"))
    max_batch_size: int = Field(64, gt=0, validation_alias=_env("max_batch_size", "MAX_BATCH_SIZE"))
    # 0: an idle engine runs a request at once; under load the queue fills while a batch runs.
    batch_wait_ms: float = Field(0.0, ge=0, validation_alias=_env("batch_wait_ms", "BATCH_WAIT_MS"))
    # auto: on CPU, a batch is split by length where padding costs more than another forward
    # call (runtime/sub_batches.py); off: one forward call per batch.
    sub_batches: Literal["auto", "off"] = Field(
        "auto", validation_alias=_env("sub_batches", "SUB_BATCHES"))

    # Request limits.
    max_input_texts: int = Field(
        2048, gt=0, validation_alias=_env("max_input_texts", "MAX_INPUT_TEXTS"))
    max_rerank_documents: int = Field(
        1000, gt=0, validation_alias=_env("max_rerank_documents", "MAX_RERANK_DOCUMENTS"))
    max_request_tokens: int = Field(
        1 << 20, gt=0, validation_alias=_env("max_request_tokens", "MAX_REQUEST_TOKENS"))
    max_request_bytes: int = Field(
        32 << 20, gt=0, validation_alias=_env("max_request_bytes", "MAX_REQUEST_BYTES"))
    # Memory bounds (docs/operations.md "Limits"): characters being tokenised at once in the
    # whole process (one request more than this: 413), ColBERT vectors in one response.
    max_tokenize_chars: int = Field(
        4 << 20, gt=0, validation_alias=_env("max_tokenize_chars", "MAX_TOKENIZE_CHARS"))
    max_colbert_tokens: int = Field(
        32768, gt=0, validation_alias=_env("max_colbert_tokens", "MAX_COLBERT_TOKENS"))

    # Backpressure: items (texts or pairs) waiting per model; seconds a request may wait.
    max_queue_size: int = Field(
        8192, gt=0, validation_alias=_env("max_queue_size", "MAX_QUEUE_SIZE"))
    request_timeout: float = Field(
        60.0, gt=0, validation_alias=_env("request_timeout", "REQUEST_TIMEOUT"))
    # Seconds from SIGTERM for admitted requests to finish; then 503 shutting_down and exit 0.
    grace_period: float = Field(
        30.0, gt=0, validation_alias=_env("grace_period", "GRACE_PERIOD"))

    # More models (predictor/models_config.py): repeatable --model specs and a config file.
    model_specs: list[str] = Field(default_factory=list,
                                   validation_alias=_env("model_specs", "MODEL_SPECS"))
    models_config: str | None = Field(None,
                                      validation_alias=_env("models_config", "MODELS_CONFIG"))

    # Drop-in routes of the seed services (predictor/api/http/dropin, docs/compat.md).
    compat_routes: Flag = Field(True, validation_alias=_env("compat_routes", "COMPAT_ROUTES"))

    # HTTP connection limits (api/http_protocol.py): request head size; seconds a request head
    # may take to arrive and a body may pause.
    max_header_bytes: int = Field(
        64 * 1024, gt=0, validation_alias=_env("max_header_bytes", "MAX_HEADER_BYTES"))
    read_timeout: float = Field(30.0, gt=0, validation_alias=_env("read_timeout", "READ_TIMEOUT"))

    # KServe's model repository API (/v2/repository/..., gRPC RepositoryModelLoad/Unload): an
    # unload takes a model offline until restart, so it is off unless asked for (needs a token).
    repository_api: Flag = Field(False,
                                 validation_alias=_env("repository_api", "REPOSITORY_API"))
    # Seed 002's training routes (predictor/api/http/dropin/training.py, docs/finetune.md).
    training: Flag = Field(False, validation_alias=_env("training", "TRAINING"))
    training_output_dir: str = Field(
        "fine-tuned", validation_alias=_env("training_output_dir", "TRAINING_OUTPUT_DIR"))
    training_backend: Literal["auto", "local", "kubernetes"] = Field(
        "auto", validation_alias=_env("training_backend", "TRAINING_BACKEND"))
    training_job_template: str | None = Field(
        None, validation_alias=_env("training_job_template", "TRAINING_JOB_TEMPLATE"))
    training_image: str | None = Field(
        None, validation_alias=_env("training_image", "TRAINING_IMAGE"))

    demo: bool = False

    @field_validator("embedder", "reranker")
    @classmethod
    def _strip(cls, value: str) -> str:
        return value.strip()

    def batch_tokens_for(self, device: str) -> int:
        """The padded-token budget of one forward pass on ``device``."""
        if self.max_batch_tokens is not None:
            return self.max_batch_tokens
        return CPU_BATCH_TOKENS if device == "cpu" else GPU_BATCH_TOKENS

    @property
    def embedder_enabled(self) -> bool:
        return self.embedder.lower() != "none"

    @property
    def reranker_enabled(self) -> bool:
        return self.reranker.lower() != "none"

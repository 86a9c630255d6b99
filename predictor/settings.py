"""Server settings: environment variables with defaults, overridden by command-line flags.

The flags and variables of docs/operations.md (the contract's in docs/api.md), with the engine's
batching knobs. pydantic-settings reads the environment; ``cli.py`` lays non-empty flags over it.
Each knob is written once, as a ``knob(...)`` field below: its default, constraints, environment
variable, ``--help`` group and text; ``cli.build_parser`` makes the flag from it.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AliasChoices, BeforeValidator, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_EMBEDDER = "BAAI/bge-m3"
DEFAULT_RERANKER = "BAAI/bge-reranker-v2-m3"
# Default token budgets per forward pass (docs/benchmarks.md: on a CPU, 8 texts of 500
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


def knob(default: Any, *names: str, group: str, help: str, flag: dict[str, Any] | None = None,
         **field: Any) -> Any:
    """A setting that is also the flag ``--<field name>``: the one place a knob is written.

    ``names``: what it is read as (the field name, then its environment variable); ``group``
    and ``help``: its ``--help`` entry (``{env}`` stands for the variable); ``flag``: extra
    argparse arguments; ``field``: pydantic's constraints. ``cli.build_parser`` makes the flag.
    """
    extra = {"group": group, "help": help, "flag": flag or {}}
    return Field(default, validation_alias=_env(*names) if names else None,
                 json_schema_extra=extra, **field)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(populate_by_name=True, extra="ignore")

    embedder: str = knob(
        DEFAULT_EMBEDDER, "embedder", "EMBEDDING_MODEL_NAME", group="models",
        help="BGE-M3 model: local directory or Hugging Face id; 'none' disables "
             "(env {env}, default BAAI/bge-m3)")
    reranker: str = knob(
        DEFAULT_RERANKER, "reranker", "RERANKER_MODEL_NAME", group="models",
        help="Cross-encoder: local directory or Hugging Face id; 'none' disables "
             "(env {env}, default BAAI/bge-reranker-v2-m3)")
    embedder_name: str = knob(
        "bge-m3", group="models",
        help="Name of the embedder in V2 routes and the 'model' field (default bge-m3)")
    reranker_name: str = knob("bge-reranker", group="models",
                              help="Name of the reranker (default bge-reranker)")
    device: str | None = knob(
        None, "device", "DEVICE", group="device",
        help="auto (every visible GPU, else cpu), cpu, cuda, cuda:N, or several: "
             "cuda:0,cuda:1 (env {env}; default auto)")
    # Legacy alias: with dtype auto, false means float32 on CUDA; ignored on CPU.
    use_fp16: Flag = knob(
        True, "use_fp16", "USE_FP16", group="device",
        help="Half precision on CUDA, ignored on CPU (env {env}, default true); "
             "an alias: with --dtype auto, false means float32 on CUDA")
    # auto: float16 on CUDA, bfloat16 on a CPU with native bf16, else float32 (runtime/device.py)
    dtype: Literal["auto", "float32", "bfloat16", "float16", "int8"] = knob(
        "auto", "dtype", "DTYPE", group="device", flag={"choices": "literal"},
        help="auto, float32, bfloat16, float16 or int8 (env {env}, default auto: float16 on "
             "CUDA, bfloat16 on a CPU with native bf16, else float32; int8: CPU, on request)")
    # Off until a GPU measures it better (bench/gpu.sh --compile; docs/benchmarks.md, "GPU").
    torch_compile: Flag = knob(
        False, "torch_compile", "TORCH_COMPILE", group="device",
        help="torch.compile the encoder where batches are packed (CUDA): start-up compiles "
             "it during the warm-up, before ready (env {env}, default false)")
    api_token: str | None = knob(
        None, "api_token", "API_TOKEN", group="security",
        help="Bearer token required on inference routes (env {env})")
    sparse_token_mapping: Literal["tokenizer", "hash"] = knob(
        "tokenizer", "sparse_token_mapping", "SPARSE_TOKEN_MAPPING", group="sparse",
        help="Sparse index mapping: tokenizer or hash (env {env})")
    sparse_index_space: int = knob(
        1 << 20, "sparse_index_space", "SPARSE_INDEX_SPACE", gt=0, group="sparse",
        help="Modulus of the hash mapping (env {env}, default 1048576)")

    # Engine: dynamic batching on a token budget (padded, or real where batches are packed).
    # None: by device (batch_tokens_for). On CPU big batches of long texts are slower per text.
    max_batch_tokens: int | None = knob(
        None, "max_batch_tokens", "MAX_BATCH_TOKENS", gt=0, group="batching",
        help="Token budget of one forward pass, padded tokens or, where batches are packed "
             "(CUDA), real ones (env {env}; default 4096 on CPU, 16384 on GPU)")
    max_batch_size: int = knob(64, "max_batch_size", "MAX_BATCH_SIZE", gt=0, group="batching",
                               help="Most sequences in one forward pass (env {env})")
    # 0: an idle engine runs a request at once; under load the queue fills while a batch runs.
    batch_wait_ms: float = knob(0.0, "batch_wait_ms", "BATCH_WAIT_MS", ge=0, group="batching",
                                help="Longest wait for a batch to fill, in ms (env {env})")
    # auto: on CPU, a batch is split by length where padding costs more than another forward
    # call (runtime/sub_batches.py); off: one forward call per batch.
    sub_batches: Literal["auto", "off"] = knob(
        "auto", "sub_batches", "SUB_BATCHES", group="batching",
        help="auto: on CPU, split a batch by length where padding costs more than "
             "another forward call; off: never (env {env})")

    # Request limits.
    max_input_texts: int = knob(
        2048, "max_input_texts", "MAX_INPUT_TEXTS", gt=0, group="limits",
        help="Most texts in one embeddings request (env {env})")
    max_rerank_documents: int = knob(
        1000, "max_rerank_documents", "MAX_RERANK_DOCUMENTS", gt=0, group="limits",
        help="Most documents in one rerank request (env {env})")
    max_request_tokens: int = knob(
        1 << 20, "max_request_tokens", "MAX_REQUEST_TOKENS", gt=0, group="limits",
        help="Most tokens in one request, all texts together (env {env})")
    max_request_bytes: int = knob(
        32 << 20, "max_request_bytes", "MAX_REQUEST_BYTES", gt=0, group="limits",
        help="Largest request body in bytes; 413 beyond (env {env})")
    # Memory bounds (docs/operations.md "Limits"): characters being tokenised at once in the
    # whole process (one request more than this: 413), ColBERT vectors in one response.
    max_tokenize_chars: int = knob(
        4 << 20, "max_tokenize_chars", "MAX_TOKENIZE_CHARS", gt=0, group="limits",
        help="Most characters of text tokenised at once, all requests together; "
             "one request over it: 413 (env {env})")
    max_colbert_tokens: int = knob(
        32768, "max_colbert_tokens", "MAX_COLBERT_TOKENS", gt=0, group="limits",
        help="Most ColBERT vectors (tokens) in one response; 400 beyond (env {env})")

    # Backpressure: items (texts or pairs) waiting per model; seconds a request may wait.
    max_queue_size: int = knob(
        8192, "max_queue_size", "MAX_QUEUE_SIZE", gt=0, group="limits",
        help="Most items (texts or pairs) waiting per model; 429 beyond (env {env})")
    request_timeout: float = knob(
        60.0, "request_timeout", "REQUEST_TIMEOUT", gt=0, group="limits",
        help="Seconds a request may wait for the model; 503 beyond (env {env})")
    # Seconds from SIGTERM for admitted requests to finish; then 503 shutting_down and exit 0.
    grace_period: float = knob(
        30.0, "grace_period", "GRACE_PERIOD", gt=0, group="limits",
        help="Seconds after SIGTERM for admitted requests to finish; those still running "
             "then get 503 shutting_down and the process exits 0 (env {env}, "
             "default 30; keep terminationGracePeriodSeconds above it)")

    # More models (predictor/models_config.py): repeatable --model specs and a config file.
    # Their flags (--model, --models_config) are written out in cli.build_parser.
    model_specs: list[str] = Field(default_factory=list,
                                   validation_alias=_env("model_specs", "MODEL_SPECS"))
    models_config: str | None = Field(None,
                                      validation_alias=_env("models_config", "MODELS_CONFIG"))

    # Drop-in routes of the seed services (predictor/api/http/dropin, docs/compat.md).
    compat_routes: Flag = knob(
        True, "compat_routes", "COMPAT_ROUTES", group="routes",
        help="Serve the seed services' drop-in routes (/health, /vectorize..., /models, "
             "/api/embed; docs/compat.md) (env {env}, default true)")

    # HTTP connection limits (api/http/wire_limits.py): request head size; seconds a request
    # head may take to arrive and a body may pause.
    max_header_bytes: int = knob(
        64 * 1024, "max_header_bytes", "MAX_HEADER_BYTES", gt=0, group="limits",
        help="Largest request head (request line and headers) in bytes; 431 "
             "beyond (env {env}, default 65536)")
    read_timeout: float = knob(
        30.0, "read_timeout", "READ_TIMEOUT", gt=0, group="limits",
        help="Seconds a connection may take to send a request head, or pause in a body; "
             "408 beyond (env {env}, default 30)")

    # KServe's model repository API (/v2/repository/..., gRPC RepositoryModelLoad/Unload): an
    # unload takes a model offline until restart, so it is off unless asked for (needs a token).
    repository_api: Flag = knob(
        False, "repository_api", "REPOSITORY_API", group="security",
        help="Allow KServe's model repository API (load/unload over REST and gRPC); "
             "needs --api_token (env {env}, default false)")
    # Seed 002's training routes (predictor/api/http/dropin/training.py, docs/finetune.md).
    training: Flag = knob(
        False, "training", "TRAINING", group="training",
        flag={"nargs": "?", "const": True},  # a bare --training turns it on
        help="Serve seed 002's /fine-tune, /fine-tune-lora and /train-status routes "
             "(docs/finetune.md) (env {env}, default false)")
    training_output_dir: str = knob(
        "fine-tuned", "training_output_dir", "TRAINING_OUTPUT_DIR", group="training",
        help="Where the training routes write models, <dir>/<model_name> "
             "(env {env}, default fine-tuned)")
    training_backend: Literal["auto", "local", "kubernetes"] = knob(
        "auto", "training_backend", "TRAINING_BACKEND", group="training",
        help="auto (a Kubernetes Job when in a pod allowed to create Jobs, else a "
             "child process), local or kubernetes (env {env})")
    training_job_template: str | None = knob(
        None, "training_job_template", "TRAINING_JOB_TEMPLATE", group="training",
        help="YAML/JSON Job template for cluster training "
             "(env {env}; the chart mounts one)")
    training_image: str | None = knob(
        None, "training_image", "TRAINING_IMAGE", group="training",
        help="Image of cluster training Jobs without a template (env {env})")

    demo: bool = False

    @field_validator("embedder", "reranker")
    @classmethod
    def _strip(cls, value: str) -> str:
        return value.strip()

    def batch_tokens_for(self, device: str) -> int:
        """The token budget of one forward pass on ``device``."""
        if self.max_batch_tokens is not None:
            return self.max_batch_tokens
        return CPU_BATCH_TOKENS if device == "cpu" else GPU_BATCH_TOKENS

    @property
    def embedder_enabled(self) -> bool:
        return self.embedder.lower() != "none"

    @property
    def reranker_enabled(self) -> bool:
        return self.reranker.lower() != "none"

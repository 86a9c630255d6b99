"""``python -m predictor``: parse flags, load the models, serve them with one KServe ModelServer.

Flags come on top of ``kserve.model_server.parser`` (``--http_port``, ``--grpc_port``, ...).
Environment variables give the defaults (``settings.py``); a flag given on the command line wins.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import get_args

from predictor.settings import Settings

logger = logging.getLogger("predictor")

_BOOL = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}

# flag -> help; every one maps to the Settings field of the same name.
FLAGS = {
    "embedder": "BGE-M3 model: local directory or Hugging Face id; 'none' disables "
                "(env EMBEDDING_MODEL_NAME, default BAAI/bge-m3)",
    "reranker": "Cross-encoder: local directory or Hugging Face id; 'none' disables "
                "(env RERANKER_MODEL_NAME, default BAAI/bge-reranker-v2-m3)",
    "embedder_name": "Name of the embedder in V2 routes and the 'model' field (default bge-m3)",
    "reranker_name": "Name of the reranker (default bge-reranker)",
    "device": "auto (every visible GPU, else cpu), cpu, cuda, cuda:N, or several: "
              "cuda:0,cuda:1 (env DEVICE; default auto)",
    "use_fp16": "Half precision on CUDA, ignored on CPU (env USE_FP16, default true); "
                "an alias: with --dtype auto, false means float32 on CUDA",
    "dtype": "auto, float32, bfloat16, float16 or int8 (env DTYPE, default auto: float16 on "
             "CUDA, bfloat16 on a CPU with native bf16, else float32; int8: CPU, on request)",
    "api_token": "Bearer token required on inference routes (env API_TOKEN)",
    "sparse_token_mapping": "Sparse index mapping: tokenizer or hash (env SPARSE_TOKEN_MAPPING)",
    "sparse_index_space": "Modulus of the hash mapping (env SPARSE_INDEX_SPACE, default 1048576)",
    "max_batch_tokens": "Padded-token budget of one forward pass (env MAX_BATCH_TOKENS; "
                        "default 4096 on CPU, 16384 on GPU)",
    "max_batch_size": "Most sequences in one forward pass (env MAX_BATCH_SIZE)",
    "batch_wait_ms": "Longest wait for a batch to fill, in ms (env BATCH_WAIT_MS)",
    "sub_batches": "auto: on CPU, split a batch by length where padding costs more than "
                   "another forward call; off: never (env SUB_BATCHES)",
    "max_input_texts": "Most texts in one embeddings request (env MAX_INPUT_TEXTS)",
    "max_rerank_documents": "Most documents in one rerank request (env MAX_RERANK_DOCUMENTS)",
    "max_request_tokens": "Most tokens in one request, all texts together (env MAX_REQUEST_TOKENS)",
    "max_request_bytes": "Largest request body in bytes; 413 beyond (env MAX_REQUEST_BYTES)",
    "max_tokenize_chars": "Most characters of text tokenised at once, all requests together; "
                          "one request over it: 413 (env MAX_TOKENIZE_CHARS)",
    "max_colbert_tokens": "Most ColBERT vectors (tokens) in one response; 400 beyond "
                          "(env MAX_COLBERT_TOKENS)",
    "max_queue_size": "Most items (texts or pairs) waiting per model; 429 beyond "
                      "(env MAX_QUEUE_SIZE)",
    "request_timeout": "Seconds a request may wait for the model; 503 beyond "
                       "(env REQUEST_TIMEOUT)",
    "compat_routes": "Serve the seed services' drop-in routes (/health, /vectorize..., /models, "
                     "/api/embed; docs/compat.md) (env COMPAT_ROUTES, default true)",
    "grace_period": "Seconds after SIGTERM for admitted requests to finish; those still running "
                    "then get 503 shutting_down and the process exits 0 (env GRACE_PERIOD, "
                    "default 30; keep terminationGracePeriodSeconds above it)",
    "max_header_bytes": "Largest request head (request line and headers) in bytes; 431 "
                        "beyond (env MAX_HEADER_BYTES, default 65536)",
    "read_timeout": "Seconds a connection may take to send a request head, or pause in a body; "
                    "408 beyond (env READ_TIMEOUT, default 30)",
    "repository_api": "Allow KServe's model repository API (load/unload over REST and gRPC); "
                      "needs --api_token (env REPOSITORY_API, default false)",
    "training": "Serve seed 002's /fine-tune, /fine-tune-lora and /train-status routes "
                "(docs/finetune.md) (env TRAINING, default false)",
    "training_output_dir": "Where the training routes write models, <dir>/<model_name> "
                           "(env TRAINING_OUTPUT_DIR, default fine-tuned)",
    "training_backend": "auto (a Kubernetes Job when in a pod allowed to create Jobs, else a "
                        "child process), local or kubernetes (env TRAINING_BACKEND)",
    "training_job_template": "YAML/JSON Job template for cluster training "
                             "(env TRAINING_JOB_TEMPLATE; the chart mounts one)",
    "training_image": "Image of cluster training Jobs without a template (env TRAINING_IMAGE)",
}


# flag -> its --help group; a flag not listed here shows under "Other server options".
FLAG_GROUPS = {
    "embedder": "models", "reranker": "models", "embedder_name": "models",
    "reranker_name": "models",
    "device": "device", "use_fp16": "device", "dtype": "device",
    "api_token": "security",
    "sparse_token_mapping": "sparse", "sparse_index_space": "sparse",
    "max_batch_tokens": "batching", "max_batch_size": "batching", "batch_wait_ms": "batching",
    "sub_batches": "batching",
    "max_input_texts": "limits", "max_rerank_documents": "limits",
    "max_request_tokens": "limits", "max_request_bytes": "limits", "max_queue_size": "limits",
    "max_tokenize_chars": "limits", "max_colbert_tokens": "limits",
    "request_timeout": "limits", "grace_period": "limits",
    "max_header_bytes": "limits", "read_timeout": "limits",
    "compat_routes": "routes", "repository_api": "security",
    "training": "training", "training_output_dir": "training", "training_backend": "training",
    "training_job_template": "training", "training_image": "training",
}
GROUP_TITLES = {
    "models": "Models to serve",
    "device": "Device and precision",
    "security": "Security",
    "sparse": "Sparse vectors",
    "batching": "Batching",
    "limits": "Request limits and backpressure",
    "routes": "Routes",
    "training": "Fine-tuning routes (seed 002)",
    "other": "Other server options",
}
EPILOG = """\
examples:
  python -m predictor --demo
  python -m predictor --embedder BAAI/bge-m3 --reranker none --api_token $TOKEN
  python -m predictor \\
      --model 'name=e5,kind=embedder,path=intfloat/multilingual-e5-large,aliases=e5-large|me5'

Environment variables give the defaults; a flag given on the command line wins.
Docs: README.md, docs/api.md, docs/operations.md, docs/models.md.
"""


def _with_default(name: str, help_text: str) -> str:
    """The help text, with the setting's default appended when the text does not say it."""
    if "default" in help_text:
        return help_text
    field = Settings.model_fields.get(name)
    if field is None or field.default is None or field.default_factory is not None:
        return help_text
    default = field.default
    shown = str(default).lower() if isinstance(default, bool) else default
    return f"{help_text} (default: {shown})"


def _bool(value: str) -> bool:
    try:
        return _BOOL[value.strip().lower()]
    except KeyError as exc:
        raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}") from exc


def build_parser() -> argparse.ArgumentParser:
    """Our flags first, in groups, with defaults; KServe's ModelServer flags after, apart."""
    from kserve import model_server

    parser = argparse.ArgumentParser(
        prog="python -m predictor",
        usage="%(prog)s [--embedder DIR_OR_ID] [--reranker DIR_OR_ID] [--model SPEC ...] "
              "[--demo] [options]",
        description="KServe predictor for BGE-M3 embeddings and cross-encoder reranking.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    groups = {key: parser.add_argument_group(title) for key, title in GROUP_TITLES.items()}
    types = {"use_fp16": _bool, "sparse_index_space": int, "max_batch_tokens": int,
             "max_batch_size": int, "batch_wait_ms": float, "max_input_texts": int,
             "max_rerank_documents": int, "max_request_tokens": int, "max_request_bytes": int,
             "max_queue_size": int, "request_timeout": float, "compat_routes": _bool,
             "repository_api": _bool, "grace_period": float, "training": _bool}
    types |= {"max_tokenize_chars": int, "max_colbert_tokens": int}
    types |= {"max_header_bytes": int, "read_timeout": float}
    extra = {"training": {"nargs": "?", "const": True},  # a bare --training turns it on
             "dtype": {"choices": get_args(Settings.model_fields["dtype"].annotation)}}
    for name, help_text in FLAGS.items():
        group = groups[FLAG_GROUPS.get(name, "other")]
        group.add_argument(f"--{name}", type=types.get(name, str), default=None,
                           help=_with_default(name, help_text), **extra.get(name, {}))
    models = groups["models"]
    models.add_argument(
        "--model", action="append", default=None, metavar="SPEC", dest="model_specs",
        help="Serve one more model (repeatable), as key=value pairs: path, name, kind, "
             "aliases (a|b), family, pooling, normalize, query_prefix, passage_prefix, "
             "max_length, trust_remote_code; example below (env MODEL_SPECS as a JSON list). "
             "With --model or --models_config, --embedder/--reranker are served only when "
             "given explicitly")
    models.add_argument("--models_config", default=None, metavar="FILE",
                        help="YAML/JSON file listing models to serve, with the keys of --model "
                             "(env MODELS_CONFIG); see docs/models.md")
    models.add_argument("--demo", action="store_true",
                        help="Serve small RANDOM-WEIGHT models built locally (offline smoke "
                             "test)")
    kserve_group = parser.add_argument_group(
        "KServe ModelServer options",
        "kserve.model_server's own flags, unchanged (--workers must stay 1).")
    for action in model_server.parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        if action.default not in (None, argparse.SUPPRESS, False) and action.help \
                and "default" not in action.help.lower():
            action.help = f"{action.help.rstrip('.')} (default: %(default)s)"
        kserve_group._add_action(action)
    return parser


# Logging: start-up says what is served where in a few lines; one access line per request.
_QUIET_LOGGERS = {
    "kserve.trace": logging.WARNING,  # two latency lines per request beside uvicorn's access line
    # "loading existing colbert_linear and sparse_linear---------" on every BGE-M3 load
    "FlagEmbedding.finetune.embedder.encoder_only.m3.runner": logging.WARNING,
}
# KServe's start-up lines about features this server does not use.
_DROPPED = ("OpenAI endpoints not registered", "Time series endpoints not registered")
# KServe's gRPC interceptor logs a client's mistake (unknown model, bad input) at ERROR with a
# traceback: those are the client's errors, logged at INFO in one line like HTTP's.
_CLIENT_ERRORS = ("Error processing inference request", "Model not found", "Model not ready",
                  "Method not implemented", "Unable to process the request")


class _ServerLogFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = str(record.msg)
        if message.startswith(_DROPPED):
            return False
        if record.levelno >= logging.ERROR and message.startswith(_CLIENT_ERRORS):
            record.levelno, record.levelname = logging.INFO, "INFO"
            record.exc_info, record.exc_text = None, None
        return True


def quiet_library_logs() -> None:
    """Silence the libraries' noise: loggers above, weight-loading progress bars."""
    for name, level in _QUIET_LOGGERS.items():
        logging.getLogger(name).setLevel(level)
    kserve_logger = logging.getLogger("kserve")
    if not any(isinstance(f, _ServerLogFilter) for f in kserve_logger.filters):
        kserve_logger.addFilter(_ServerLogFilter())
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    except ImportError:  # pragma: no cover - transformers is a dependency
        pass


def log_startup_summary(models: list, settings: Settings, args: argparse.Namespace,
                        allocator: str) -> None:
    """A few lines an operator reads first: what is served where, and how."""
    for model in models:
        runner = getattr(model, "runner", None)
        dtype = str(getattr(runner, "dtype", None) or (
            "float16" if getattr(runner, "half", False) else "float32")).replace("torch.", "")
        aliases = ", ".join(getattr(model, "aliases", ()) or ())
        logger.info("serving %s %r from %s on %s (%s)%s", model.kind, model.name,
                    model.model_id, getattr(runner, "device", "?"), dtype,
                    f"; also answers to: {aliases}" if aliases else "")
    grpc = f"gRPC V2 on :{args.grpc_port}" if args.enable_grpc else "gRPC off"
    logger.info("listening: HTTP on :%s (/v1, /openai/v1, /v2), %s", args.http_port, grpc)
    logger.info("auth: %s; memory allocator: %s",
                "bearer token required on inference routes" if settings.api_token else "off",
                allocator)


def settings_from_args(args: argparse.Namespace) -> Settings:
    given = {name: getattr(args, name) for name in FLAGS if getattr(args, name) is not None}
    for name in ("model_specs", "models_config"):
        if getattr(args, name, None) is not None:
            given[name] = getattr(args, name)
    return Settings(**given, demo=args.demo)


def build_models(settings: Settings) -> list:
    """Construct and load every model (``models_config.resolve_specs``); ready after ``load()``."""
    from predictor.api.kserve.embedder import EmbedderModel
    from predictor.api.kserve.reranker import RerankerModel
    from predictor.models_config import ModelsConfigError, resolve_specs
    from predictor.runtime.families import detect_kind, short_names
    from predictor.runtime.host import TorchHost

    try:
        specs = resolve_specs(settings)
    except ModelsConfigError as exc:
        raise SystemExit(f"error: {exc}") from None
    models = []
    for spec in specs:
        kind = spec.kind or detect_kind(spec.path)
        if kind == "embedder":
            # The SPEC --embedder is a BGE-M3 when nothing else tells its family.
            legacy = spec.path == settings.embedder and spec.name == settings.embedder_name
            model = EmbedderModel(spec.served_name, spec.path, settings, spec,
                                  default_family="bge-m3" if legacy else None, host=TorchHost())
        else:
            model = RerankerModel(spec.served_name, spec.path, settings, spec, host=TorchHost())
        model.aliases = tuple(dict.fromkeys((*spec.aliases, *short_names(spec.path))))
        models.append(model)
    if not models:
        raise SystemExit("Both --embedder and --reranker are 'none': nothing to serve.")
    for model in models:
        logger.info("loading %s %s from %s", model.kind, model.name, model.model_id)
        model.load()
    return models


def _apply_demo(settings: Settings) -> Settings:
    from predictor.demo import ensure_demo_models

    m3_dir, reranker_dir = ensure_demo_models()
    banner = "!" * 78
    logger.warning("\n%s\n  DEMO MODE: serving RANDOM-WEIGHT models built locally.\n"
                   "  Outputs are NOT meaningful; this only shows the server working offline.\n"
                   "  embedder: %s\n  reranker: %s\n%s", banner, m3_dir, reranker_dir, banner)
    update = {}
    if settings.embedder_enabled:
        update["embedder"] = str(m3_dir)
    if settings.reranker_enabled:
        update["reranker"] = str(reranker_dir)
    return settings.model_copy(update=update)


def main(argv: list[str] | None = None) -> None:
    from predictor.runtime.allocator import (
        find_jemalloc,
        loaded_allocator,
        tune_glibc_malloc,
        use_jemalloc,
    )

    if argv is None:  # run as a program: the allocator can still be chosen (re-executes)
        use_jemalloc()
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    tune_glibc_malloc()
    allocator = loaded_allocator()
    logger.info("memory allocator: %s%s", allocator,
                " (jemalloc not installed; Debian/Ubuntu: apt-get install libjemalloc2)"
                if allocator == "glibc" and find_jemalloc() is None else "")
    quiet_library_logs()
    from predictor.runtime.threads import single_thread_here, torch_threads

    single_thread_here()  # model work runs on the engines' worker threads (runtime/threads.py)
    logger.info("torch CPU threads per model worker: %d", torch_threads())
    settings = settings_from_args(args)
    if settings.repository_api and not settings.api_token:
        raise SystemExit("--repository_api needs --api_token: an open unload lets anyone take "
                         "a model offline.")
    if args.workers != 1:
        raise SystemExit("--workers must be 1: each process holds the models on its device; "
                         "scale out with replicas instead.")
    if settings.demo:
        settings = _apply_demo(settings)
    try:
        models = build_models(settings)
    except SystemExit:
        raise
    except Exception as exc:  # a half-loaded server must not report ready: exit, let k8s restart
        logger.exception("failed to load models")
        print(f"error: failed to load models: {exc}", file=sys.stderr)
        raise SystemExit(1) from exc

    import kserve
    from kserve import model_server

    from predictor.api.http.app import install_routes
    from predictor.api.http.middleware import redact_access_logs
    from predictor.api.http.registry import ServedModels
    from predictor.api.http.wire_limits import install as install_http_protocol
    from predictor.api.kserve.grpc_guard import GuardedGRPCServer
    from predictor.api.kserve.rest import V2JsonResponseType
    from predictor.api.kserve.tensors import StrictDataPlane
    from predictor.shutdown import drain_models_on_signal, exit_now

    install_routes(model_server.app, ServedModels(models), settings)
    model_server.app.add_middleware(V2JsonResponseType)  # labels V2 JSON we render (rest.py)
    redact_access_logs()
    install_http_protocol(settings.max_header_bytes, settings.read_timeout)
    server = kserve.ModelServer(http_port=args.http_port, grpc_port=args.grpc_port,
                                workers=1, max_threads=args.max_threads,
                                max_asyncio_workers=args.max_asyncio_workers,
                                enable_grpc=False,  # ours instead, with auth (api/grpc_guard.py)
                                enable_docs_url=args.enable_docs_url,
                                enable_latency_logging=args.enable_latency_logging,
                                grace_period=settings.grace_period)
    server.dataplane = StrictDataPlane(server.registered_models)  # V2 binary checks (400s)
    if args.enable_grpc:
        # What ModelServer.start does for gRPC, with the guarded server; ModelServer.stop stops
        # whatever ``_grpc_server`` holds.
        server._grpc_server = GuardedGRPCServer(
            args.grpc_port, server.dataplane, server.model_repository_extension,
            kwargs=vars(args), grace_period=server.grace_period,
            token=settings.api_token, repository_api=settings.repository_api)
        server.servers.append(server._grpc_server.start(args.max_threads))
    quiet_library_logs()  # again: KServe may have configured logging just now
    log_startup_summary(models, settings, args, loaded_allocator())
    drain_models_on_signal(model_server.app, models, settings.grace_period,
                           stop_grpc=server._grpc_server.stop if args.enable_grpc else None,
                           cut_grpc=server._grpc_server.cut if args.enable_grpc else None)
    server.start(models)
    exit_now(0)  # a batch may still run on a worker thread: do not finalise under it

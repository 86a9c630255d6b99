"""``python -m predictor``: parse flags, load the models, serve them with one KServe ModelServer.

Flags come on top of ``kserve.model_server.parser`` (``--http_port``, ``--grpc_port``, ...).
Environment variables give the defaults (``settings.py``); a flag given on the command line wins.
"""

from __future__ import annotations

import argparse
import logging
import sys

from .settings import Settings

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
    "device": "cuda, cuda:N or cpu (env DEVICE; default cuda if available)",
    "use_fp16": "Half precision on CUDA, ignored on CPU (env USE_FP16, default true)",
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
}


def _bool(value: str) -> bool:
    try:
        return _BOOL[value.strip().lower()]
    except KeyError as exc:
        raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}") from exc


def build_parser() -> argparse.ArgumentParser:
    from kserve import model_server

    parser = argparse.ArgumentParser(
        prog="python -m predictor", parents=[model_server.parser],
        description="KServe predictor for BGE-M3 embeddings and cross-encoder reranking.")
    types = {"use_fp16": _bool, "sparse_index_space": int, "max_batch_tokens": int,
             "max_batch_size": int, "batch_wait_ms": float, "max_input_texts": int,
             "max_rerank_documents": int, "max_request_tokens": int, "max_request_bytes": int,
             "max_queue_size": int, "request_timeout": float, "compat_routes": _bool,
             "repository_api": _bool, "grace_period": float}
    types |= {"max_header_bytes": int, "read_timeout": float}
    for name, help_text in FLAGS.items():
        parser.add_argument(f"--{name}", type=types.get(name, str), default=None, help=help_text)
    parser.add_argument(
        "--model", action="append", default=None, metavar="SPEC", dest="model_specs",
        help="Serve one more model (repeatable): 'name=e5,kind=embedder,"
             "path=intfloat/multilingual-e5-large,aliases=e5-large|me5' (keys: path, name, kind, "
             "aliases, family, pooling, normalize, query_prefix, passage_prefix, max_length, "
             "trust_remote_code; env MODEL_SPECS as a JSON list). With --model or "
             "--models_config, --embedder/--reranker are served only when given explicitly")
    parser.add_argument("--models_config", default=None, metavar="FILE",
                        help="YAML/JSON file listing models to serve, with the keys of --model "
                             "(env MODELS_CONFIG); see docs/models.md")
    parser.add_argument("--demo", action="store_true",
                        help="Serve small RANDOM-WEIGHT models built locally (offline smoke test)")
    return parser


def settings_from_args(args: argparse.Namespace) -> Settings:
    given = {name: getattr(args, name) for name in FLAGS if getattr(args, name) is not None}
    for name in ("model_specs", "models_config"):
        if getattr(args, name, None) is not None:
            given[name] = getattr(args, name)
    return Settings(**given, demo=args.demo)


def build_models(settings: Settings) -> list:
    """Construct and load every model (``models_config.resolve_specs``); ready after ``load()``."""
    from .kserve_models.embedder import EmbedderModel
    from .kserve_models.reranker import RerankerModel
    from .models_config import ModelsConfigError, resolve_specs
    from .runtime.families import detect_kind, short_names

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
                                  default_family="bge-m3" if legacy else None)
        else:
            model = RerankerModel(spec.served_name, spec.path, settings, spec)
        model.aliases = tuple(dict.fromkeys((*spec.aliases, *short_names(spec.path))))
        models.append(model)
    if not models:
        raise SystemExit("Both --embedder and --reranker are 'none': nothing to serve.")
    for model in models:
        logger.info("loading %s %s from %s", model.kind, model.name, model.model_id)
        model.load()
    return models


def _apply_demo(settings: Settings) -> Settings:
    from .demo import ensure_demo_models

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
    from .runtime.allocator import loaded_allocator, tune_glibc_malloc, use_jemalloc

    if argv is None:  # run as a program: the allocator can still be chosen (re-executes)
        use_jemalloc()
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    tune_glibc_malloc()
    logger.info("memory allocator: %s", loaded_allocator())
    from .runtime.threads import single_thread_here, torch_threads

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

    from .api.grpc_guard import GuardedGRPCServer
    from .api.http_protocol import install as install_http_protocol
    from .api.middleware import redact_access_logs
    from .api.registry import ServedModels
    from .api.routes import install_routes
    from .api.v2_tensors import StrictDataPlane
    from .shutdown import drain_models_on_signal, exit_now

    install_routes(model_server.app, ServedModels(models), settings)
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
    drain_models_on_signal(model_server.app, models, settings.grace_period,
                           stop_grpc=server._grpc_server.stop if args.enable_grpc else None,
                           cut_grpc=server._grpc_server.cut if args.enable_grpc else None)
    server.start(models)
    exit_now(0)  # a batch may still run on a worker thread: do not finalise under it

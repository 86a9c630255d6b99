"""``python -m predictor``: parse flags, load the models, serve them with one KServe ModelServer.

Flags come on top of ``kserve.model_server.parser`` (``--http_port``, ``--grpc_port``, ...).
Environment variables give the defaults (``settings.py``); a flag given on the command line wins.
Each of our flags is a ``settings.knob`` field: a new knob is one field there, nothing here.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any, get_args

from predictor.settings import Settings, parse_bool

logger = logging.getLogger("predictor")

def _knobs() -> dict[str, dict[str, Any]]:
    """Every ``settings.knob`` field, in order: name -> its group, help (``{env}`` filled in)
    and extra argparse arguments. The one table of flags: a knob is added in settings.py."""
    knobs = {}
    for name, field in Settings.model_fields.items():
        extra = field.json_schema_extra
        if not isinstance(extra, dict) or "help" not in extra:
            continue
        aliases = getattr(field.validation_alias, "choices", ())
        env = str(aliases[-1]) if len(aliases) > 1 else name.upper()
        knobs[name] = {**extra, "help": str(extra["help"]).replace("{env}", env)}
    return knobs


# flag -> its group, --help text and extra argparse arguments (from the Settings fields).
FLAGS = _knobs()
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
    parsed = parse_bool(value)
    if parsed is None:
        raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")
    return parsed


def _flag_type(annotation: Any) -> Any:
    """argparse's ``type`` for a setting: ``_bool``, int or float by its annotation, else str."""
    kinds = [a for a in (get_args(annotation) or (annotation,)) if a is not type(None)]
    for kind, parse in ((bool, _bool), (int, int), (float, float)):
        if kinds == [kind]:
            return parse
    return str


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
    for name, knob in FLAGS.items():
        annotation = Settings.model_fields[name].annotation
        extra = dict(knob["flag"])
        if extra.get("choices") == "literal":
            extra["choices"] = get_args(annotation)
        groups[knob["group"]].add_argument(f"--{name}", type=_flag_type(annotation),
                                           default=None,
                                           help=_with_default(name, knob["help"]), **extra)
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
    from predictor.runtime.families import detect_kind
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
    import torch
    from kserve import model_server

    from predictor.api.http.app import install_routes
    from predictor.api.http.middleware import redact_access_logs
    from predictor.api.http.registry import ServedModels
    from predictor.api.http.wire_limits import install as install_http_protocol
    from predictor.api.kserve.grpc_guard import GuardedGRPCServer
    from predictor.api.kserve.rest import V2JsonResponseType
    from predictor.api.kserve.tensors import StrictDataPlane
    from predictor.shutdown import drain_models_on_signal, exit_now

    install_routes(model_server.app, ServedModels(models), settings,
                   gpu_available=torch.cuda.is_available)
    model_server.app.add_middleware(V2JsonResponseType)  # labels V2 JSON we render (rest.py)
    redact_access_logs()
    install_http_protocol(settings.max_header_bytes, settings.read_timeout)
    server = kserve.ModelServer(http_port=args.http_port, grpc_port=args.grpc_port,
                                workers=1, max_threads=args.max_threads,
                                max_asyncio_workers=args.max_asyncio_workers,
                                enable_grpc=False,  # ours instead, with auth (grpc_guard.py)
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

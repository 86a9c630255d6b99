"""The cached bundle ``python -m predictor --demo`` serves: built once, published atomically."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import pathlib
import shutil
import tempfile
import threading

from predictor.demo.builders import ModelShape, build_m3, build_reranker, fix_permissions

#: Bump whenever the build recipe changes, so cached demo models are rebuilt.
DEMO_VERSION = "1"
M3_DIRNAME = "bge-m3"
RERANKER_DIRNAME = "bge-reranker-v2-m3"
_MARKER = "DEMO_VERSION.json"

DEMO_SHAPE = ModelShape()
_ENSURE_LOCK = threading.Lock()


def default_cache_dir() -> pathlib.Path:
    """``$BGE_PREDICTOR_CACHE`` if set, else ``~/.cache/bge-predictor/demo``."""
    env = os.environ.get("BGE_PREDICTOR_CACHE")
    if env:
        return pathlib.Path(env).expanduser()
    return pathlib.Path.home() / ".cache" / "bge-predictor" / "demo"


def _marker_payload() -> dict:
    """What the marker records; any change to it invalidates existing caches."""
    return {"version": DEMO_VERSION, "shape": dataclasses.asdict(DEMO_SHAPE)}


def _is_complete(bundle: pathlib.Path) -> bool:
    """Trust a bundle only if its marker (written last) matches this recipe and shape."""
    try:
        marker = json.loads((bundle / _MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return (
        marker == _marker_payload()
        and (bundle / M3_DIRNAME / "config.json").is_file()
        and (bundle / RERANKER_DIRNAME / "config.json").is_file()
    )


def _replace_stale(bundle: pathlib.Path, fresh: pathlib.Path) -> None:
    """Swap an invalid bundle (old marker, foreign files) for ``fresh``, then delete it."""
    stale = pathlib.Path(tempfile.mkdtemp(prefix=f".{bundle.name}.stale-", dir=bundle.parent))
    try:
        with contextlib.suppress(FileNotFoundError):  # a concurrent builder moved it already
            os.rename(bundle, stale / "old")
        try:
            os.rename(fresh, bundle)
        except OSError:
            if not _is_complete(bundle):
                raise
    finally:
        shutil.rmtree(stale, ignore_errors=True)


def ensure_demo_models(cache_dir=None) -> tuple[pathlib.Path, pathlib.Path]:
    """Build once (cached) the demo embedder and reranker dirs; returns (m3_dir, reranker_dir).

    Why the dance: both models are built in a temporary sibling dir and published with one
    atomic ``rename``, and the marker (version + shape) is written last, so an interrupted
    build never leaves a half model that a later run would trust. Concurrent builders are
    safe: the loser of the rename discards its copy and uses the winner's.
    """
    root = pathlib.Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    root = root.absolute()  # returned paths must stay valid if the caller changes cwd
    bundle = root / f"demo-v{DEMO_VERSION}"
    m3_dir, rr_dir = bundle / M3_DIRNAME, bundle / RERANKER_DIRNAME
    if _is_complete(bundle):
        return m3_dir, rr_dir
    with _ENSURE_LOCK:
        if _is_complete(bundle):
            return m3_dir, rr_dir
        root.mkdir(parents=True, exist_ok=True)
        tmp = pathlib.Path(tempfile.mkdtemp(prefix=f".{bundle.name}.tmp-", dir=root))
        try:
            build_m3(tmp / M3_DIRNAME, DEMO_SHAPE)
            build_reranker(tmp / RERANKER_DIRNAME, DEMO_SHAPE)
            (tmp / _MARKER).write_text(json.dumps(_marker_payload()), encoding="utf-8")
            fix_permissions(tmp)
            try:
                os.rename(tmp, bundle)
            except OSError:
                if not _is_complete(bundle):  # else another process published first: use it
                    _replace_stale(bundle, tmp)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return m3_dir, rr_dir

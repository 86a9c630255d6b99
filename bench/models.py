"""Random-weight model directories for the benchmark, built once per shape and cached.

Why random weights: the real checkpoints cannot be downloaded here, and throughput depends on
the shapes (layers, hidden size, vocabulary), not on the values. ``predictor.demo`` writes
directories that FlagEmbedding, transformers and sentence-transformers load unchanged, so every
contender runs its real loading and inference code.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import tempfile
from dataclasses import asdict, dataclass

CACHE_DIR = pathlib.Path(__file__).resolve().parent / ".cache"


@dataclass(frozen=True)
class Shape:
    layers: int
    hidden: int
    heads: int
    intermediate: int
    vocab_size: int

    @property
    def key(self) -> str:
        return (f"l{self.layers}-h{self.hidden}-a{self.heads}-i{self.intermediate}"
                f"-v{self.vocab_size}")


#: small: the CPU benchmark model (6 x 384, bge-m3's vocabulary size).
#: full: bge-m3 / bge-reranker-v2-m3 (24 x 1024, 16 heads, 4096, 250002 pieces).
#: tiny: smoke runs of the harness itself.
SHAPES = {
    "tiny": Shape(layers=2, hidden=64, heads=4, intermediate=128, vocab_size=2000),
    "small": Shape(layers=6, hidden=384, heads=6, intermediate=1536, vocab_size=250002),
    "full": Shape(layers=24, hidden=1024, heads=16, intermediate=4096, vocab_size=250002),
}


def ensure_models(shape: Shape, cache_dir: pathlib.Path = CACHE_DIR
                  ) -> tuple[pathlib.Path, pathlib.Path]:
    """Return (m3_dir, reranker_dir) for ``shape``, building them on first use.

    Built in a temporary sibling and renamed into place, so an interrupted build is never
    mistaken for a finished one.
    """
    bundle = cache_dir / shape.key
    m3_dir, rr_dir = bundle / "bge-m3", bundle / "bge-reranker-v2-m3"
    if (bundle / "shape.json").is_file():
        return m3_dir, rr_dir
    from predictor.demo import ModelShape, build_m3, build_reranker

    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=f".{shape.key}-", dir=cache_dir))
    try:
        demo_shape = ModelShape(**asdict(shape))
        build_m3(tmp / "bge-m3", demo_shape)
        build_reranker(tmp / "bge-reranker-v2-m3", demo_shape)
        (tmp / "shape.json").write_text(json.dumps(asdict(shape)), encoding="utf-8")
        try:
            os.rename(tmp, bundle)
        except OSError:
            if not (bundle / "shape.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return m3_dir, rr_dir


def sentence_transformers_view(m3_dir: pathlib.Path, hidden: int) -> pathlib.Path:
    """A sibling of ``m3_dir`` in sentence-transformers layout, for the peer (Infinity).

    Infinity loads embedders through sentence-transformers, which needs the files that the
    published BAAI/bge-m3 ships beside its weights: ``modules.json`` (Transformer, Pooling,
    Normalize), ``1_Pooling/config.json`` with CLS pooling, ``2_Normalize/``,
    ``sentence_bert_config.json`` and ``config_sentence_transformers.json``. The weights and
    tokenizer are symlinked, not copied, so both servers load the very same files.
    """
    view = m3_dir.parent / "bge-m3-sentence-transformers"
    if (view / "modules.json").is_file():
        return view
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=".st-", dir=m3_dir.parent))
    for item in m3_dir.iterdir():
        (tmp / item.name).symlink_to(item.resolve())
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling",
         "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize",
         "type": "sentence_transformers.models.Normalize"},
    ]
    pooling = {"word_embedding_dimension": hidden, "pooling_mode_cls_token": True,
               "pooling_mode_mean_tokens": False, "pooling_mode_max_tokens": False,
               "pooling_mode_mean_sqrt_len_tokens": False}
    files = {
        "modules.json": modules,
        "1_Pooling/config.json": pooling,
        "sentence_bert_config.json": {"max_seq_length": 8192, "do_lower_case": False},
        "config_sentence_transformers.json": {
            "__version__": {"sentence_transformers": "3.4.1"}, "prompts": {},
            "default_prompt_name": None, "similarity_fn_name": "cosine"},
    }
    (tmp / "1_Pooling").mkdir()
    (tmp / "2_Normalize").mkdir()
    for name, content in files.items():
        (tmp / name).write_text(json.dumps(content, indent=2), encoding="utf-8")
    try:
        os.rename(tmp, view)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
    return view

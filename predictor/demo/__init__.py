"""Small random-weight stand-ins for BAAI/bge-m3 and BAAI/bge-reranker-v2-m3.

Why: the real checkpoints are ~2.2 GB each and need the Hugging Face hub. The offline smoke
test (``python -m predictor --demo``), the test suite and the benchmarks need models that the
*real* loaders (``FlagEmbedding.BGEM3FlagModel``, ``FlagEmbedding.FlagReranker``,
``transformers.AutoTokenizer``) accept unchanged, so every code path of the predictor runs as it
would in production. The directories built here have exactly the files and layout of the
published checkpoints (XLM-RoBERTa config + safetensors, XLM-R style tokenizer, and for M3 the
``colbert_linear.pt`` / ``sparse_linear.pt`` heads); only the sizes and the weights differ.
Their outputs are deterministic but meaningless.

Heavy libraries (torch, transformers, tokenizers) are imported lazily so that importing this
package stays cheap. Modules: ``corpus`` (the tokenizer's training text), ``tokenizer`` (an
XLM-R-like tokenizer trained on it), ``builders`` (the model directories), ``cache`` (the bundle
``--demo`` serves).
"""

from predictor.demo.builders import (
    ModelShape,
    build_m3,
    build_reranker,
    quiet_progress,
    xlmr_config,
)
from predictor.demo.cache import (
    DEMO_SHAPE,
    DEMO_VERSION,
    M3_DIRNAME,
    RERANKER_DIRNAME,
    default_cache_dir,
    ensure_demo_models,
)
from predictor.demo.corpus import corpus
from predictor.demo.tokenizer import MODEL_MAX_LENGTH, train_tokenizer

__all__ = [
    "DEMO_SHAPE",
    "DEMO_VERSION",
    "M3_DIRNAME",
    "MODEL_MAX_LENGTH",
    "RERANKER_DIRNAME",
    "ModelShape",
    "build_m3",
    "build_reranker",
    "corpus",
    "default_cache_dir",
    "ensure_demo_models",
    "quiet_progress",
    "train_tokenizer",
    "xlmr_config",
]

"""KServe predictor for BGE-M3 embeddings (dense, sparse, ColBERT) and cross-encoder reranking."""

__version__ = "0.1.0"

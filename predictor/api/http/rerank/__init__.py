"""The rerank task: Cohere/Jina-shaped ``/v1/rerank`` and Cohere's V2 ``/v2/rerank``.

A cross-encoder scores each query-document pair (``core.reranker.Reranker.score``); the
embedder can rerank too, from its own dense, sparse and ColBERT outputs
(``core.self_rerank``).
"""

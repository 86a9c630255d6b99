"""Model runners: the only code that touches torch. Each turns a padded batch into results.

Every runner implements the contract in ``predictor/core/ports.py``. One job per file:

- runners: ``runner_base.py`` (what they share: contract attributes, tokenising, placeholder
  forward, out-of-memory handling, ``model_max_length``), ``m3.py`` (BGE-M3), ``dense.py``
  (BGE v1.5, E5, GTE, sentence-transformers), ``cross_encoder.py`` (rerankers); ``packed.py``,
  ``packed_sparse.py``, ``pipeline.py`` (their unpadded CUDA path, overlapped in three
  stages), ``int8.py``, ``device.py`` (dtype, device), ``flag_free.py`` (loading without
  FlagEmbedding).
- a model's files: ``model_files.py`` (read, check complete), ``st_files.py``
  (sentence-transformers config), ``pooling.py`` (pooling, Dense layers).
- families: ``family_names.py``, ``family_defaults.py``, ``detection.py``,
  ``loaders.py`` (the runner for a model); ``families.py`` gathers their public names.
- serving a runner: ``sub_batches.py`` (CPU length splitting), ``warmup.py``,
  ``worker_setup.py``, ``threads.py``, ``allocator.py``.
"""

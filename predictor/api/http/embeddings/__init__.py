"""Embedding routes: ``/v1/embeddings`` (OpenAI), sparse and hybrid embeddings."""

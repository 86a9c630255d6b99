"""Protocol adapters: HTTP/JSON and KServe tensors in, model ``encode``/``score`` calls out.

Nothing here imports torch.
"""

"""Device and dtype choice shared by the runners."""

from __future__ import annotations

import torch


def resolve_device(device: str | None) -> str:
    if device:
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"


def use_half(device: str, use_fp16: bool) -> bool:
    """fp16 only on CUDA: on CPU it is slower and less exact, so it is ignored there."""
    return use_fp16 and device.startswith("cuda")


def pad_batch(sequences: list[list[int]], pad_id: int, device: str):
    """Right-pad token id lists into (input_ids, attention_mask) tensors on ``device``."""
    width = max(len(seq) for seq in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        ids[row, : len(seq)] = torch.as_tensor(seq, dtype=torch.long)
        mask[row, : len(seq)] = 1
    if device != "cpu":
        ids = ids.pin_memory().to(device, non_blocking=True)
        mask = mask.pin_memory().to(device, non_blocking=True)
    return ids, mask

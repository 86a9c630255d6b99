"""``python -m bench.dtype_forward M3_DIR``: one M3 forward in each CPU precision set-up,
interleaved, with its fidelity to float32 (docs/benchmarks.md, "CPU dtypes").

Variants: ``fp32``; ``cast`` (the whole encoder cast to bf16); ``autocast`` (float32 weights,
``torch.autocast``); ``ours-bf16`` (what ``--dtype bfloat16`` serves: Linear weights in bf16
under autocast, runtime/device.py); ``torch.ao`` (deprecated dynamic int8); ``torchao`` (if
installed); ``ours-int8`` (what ``--dtype int8`` serves: ONNX Runtime, runtime/int8.py).
Each round runs every variant once, the order reversed every other round; the speed-up is the
median of the per-round ratios to fp32, on wall time and on this process's CPU time, so a busy
machine slows both sides of a ratio alike.
"""

from __future__ import annotations

import argparse
import copy
import time
import warnings

import numpy as np
import torch


class _Hidden32(torch.nn.Module):
    """An encoder run with or without autocast, hidden states handed on in float32."""

    def __init__(self, encoder: torch.nn.Module, autocast: bool):
        super().__init__()
        self.encoder, self.autocast = encoder, autocast

    def forward(self, *args, **kwargs):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.autocast):
            out = self.encoder(*args, **kwargs)
        out.last_hidden_state = out.last_hidden_state.float()
        return out


def build(base, m3_dir: str, names: list[str]) -> dict:
    from predictor.runtime.device import Precision, apply_precision

    models = {"fp32": base}
    for name in names:
        model = copy.deepcopy(base)
        if name == "cast":
            model.model = _Hidden32(model.model.to(torch.bfloat16), autocast=False)
        elif name == "autocast":
            model.model = _Hidden32(model.model, autocast=True)
        elif name == "ours-bf16":
            model = apply_precision(model, Precision("bfloat16", "bench"), "cpu", "model")
        elif name == "ours-int8":
            model = apply_precision(model, Precision("int8", "bench"), "cpu", "model", m3_dir)
        elif name == "torch.ao":
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model.model = torch.ao.quantization.quantize_dynamic(
                    model.model, {torch.nn.Linear}, dtype=torch.qint8)
        elif name == "torchao":
            from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_

            quantize_(model.model, Int8DynamicActivationInt8WeightConfig())
        else:
            raise ValueError(f"unknown variant {name!r}")
        models[name] = model
    return models


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.dtype_forward", description=__doc__)
    p.add_argument("m3_dir")
    p.add_argument("--variants", default="cast,autocast,ours-bf16,ours-int8")
    p.add_argument("--rows", type=int, default=16)
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--rounds", type=int, default=8)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args(argv)
    from FlagEmbedding import BGEM3FlagModel

    torch.set_num_threads(a.threads)
    base = BGEM3FlagModel(a.m3_dir, use_fp16=False, devices="cpu").model.float().eval()
    models = build(base, a.m3_dir, [v for v in a.variants.split(",") if v])
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(5, 1000, (a.rows, a.width), generator=gen)
    mask = torch.ones_like(ids)
    for row in range(a.rows):  # lengths from 5 to width, right-padded
        n = 5 + (row * 37) % (a.width - 5)
        mask[row, n:], ids[row, n:] = 0, 1
    inputs = {"input_ids": ids, "attention_mask": mask}

    def run(name):
        with torch.inference_mode():
            return models[name](inputs, return_dense=True, return_sparse=True,
                                return_colbert_vecs=True)

    outs = {name: run(name) for name in models}  # also the warm-up
    wall = {name: [] for name in models}
    cpu = {name: [] for name in models}
    for i in range(a.rounds):
        for name in (list(models) if i % 2 == 0 else list(models)[::-1]):
            w, c = time.perf_counter(), time.process_time()
            run(name)
            wall[name].append(time.perf_counter() - w)
            cpu[name].append(time.process_time() - c)
    ref = outs["fp32"]
    real = mask.bool()
    ref_sparse = ref["sparse_vecs"].squeeze(-1)[real]
    print(f"{a.rows} x {a.width} tokens, {a.rounds} rounds, {a.threads} threads; fp32 median "
          f"{np.median(wall['fp32']):.3f} s wall, {np.median(cpu['fp32']):.3f} s CPU")

    def cosine(x, y):
        return torch.nn.functional.cosine_similarity(x.float(), y.float(), dim=-1).min().item()

    for name in list(models)[1:]:
        out = outs[name]
        speed_wall = np.median(np.array(wall["fp32"]) / np.array(wall[name]))
        speed_cpu = np.median(np.array(cpu["fp32"]) / np.array(cpu[name]))
        tokens = real[:, 1:]
        sparse = out["sparse_vecs"].squeeze(-1).float()[real]
        print(f"{name:>10}: x{speed_wall:.2f} wall, x{speed_cpu:.2f} CPU; min cosine dense "
              f"{cosine(out['dense_vecs'], ref['dense_vecs']):.6f}, ColBERT "
              f"{cosine(out['colbert_vecs'][tokens], ref['colbert_vecs'][tokens]):.6f}; sparse "
              f"max |diff| {(sparse - ref_sparse).abs().max().item():.5f} of max weight "
              f"{ref_sparse.max().item():.3f}")


if __name__ == "__main__":
    main()

"""The training run: FlagEmbedding's contrastive models, the Hugging Face ``Trainer``, peft.

- The loss is FlagEmbedding's own fine-tuning model (``EncoderOnlyEmbedderM3Model`` for BGE-M3,
  ``BiEncoderOnlyEmbedderModel`` for the dense families): in-batch negatives, each query's
  passage is its positive, the batch's other passages its negatives (cross-entropy over the
  scores / temperature: sentence-transformers' MultipleNegativesRankingLoss, which seed 002
  used).
- The loop, checkpoints, resumption, schedules and mixed precision are ``transformers.Trainer``.
- LoRA / Q-LoRA adapters are peft's; the adapter is merged into the weights at the end, so the
  output directory is a plain model that ``--embedder`` serves as it is.

BGE-M3 heads: with ``heads="all"`` (the default for BGE-M3) the dense, sparse and ColBERT
scores are trained together (FlagEmbedding's "unified fine-tuning", as BAAI trained M3). Why by
default: the three outputs share one encoder. Training the encoder for dense scores alone moves
the hidden states that the frozen ``sparse_linear`` / ``colbert_linear`` read, so sparse and
ColBERT results would drift untrained. ``heads="dense"`` trains the dense score only (what
seed 002 did; less memory: unified training holds a batch x length x vocabulary tensor for the
sparse scores) and copies both head files unchanged.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from predictor.finetune.data import Pairs
from predictor.finetune.events import TRAINING_FILE, event_line

logger = logging.getLogger("predictor.finetune")

METHODS = ("full", "lora", "qlora")
HEADS = ("all", "dense")
CHECKPOINT_DIR = ".checkpoints"
RUN_FILE = "run.json"
#: Tokenizer and sentence-transformers description files copied from the base model.
COPIED_FILES = (
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
    "sentencepiece.bpe.model", "spiece.model", "vocab.txt", "vocab.json", "merges.txt",
    "modules.json", "sentence_bert_config.json", "config_sentence_transformers.json",
)
COPIED_DIRS = ("1_Pooling", "2_Normalize")
M3_HEADS = ("colbert_linear.pt", "sparse_linear.pt")


class FinetuneError(Exception):
    """A failure with an exit code of its own (``cli.EXIT_*``)."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass
class Params:
    """Everything that shapes a run; recorded in ``training.json`` and checked on resume."""

    model: str
    method: str = "lora"
    heads: str | None = None  # BGE-M3: "all" or "dense"; None: "all" for M3
    family: str | None = None
    max_steps: int = -1
    epochs: float = 1.0
    batch_size: int = 16
    learning_rate: float | None = None  # None: 1e-5 full, 1e-4 (Q-)LoRA
    warmup_ratio: float = 0.1
    temperature: float = 0.02
    query_max_len: int = 64
    passage_max_len: int = 256
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    lora_target_modules: list[str] = field(default_factory=lambda: ["all-linear"])
    self_distill: bool = False
    gradient_checkpointing: bool = False
    precision: str = "auto"  # auto: bf16 (or fp16) on CUDA, fp32 on CPU
    seed: int = 42
    logging_steps: int = 1
    save_steps: int = 50

    def lr(self) -> float:
        if self.learning_rate is not None:
            return self.learning_rate
        return 1e-5 if self.method == "full" else 1e-4


# --------------------------------------------------------------------------- model loading

def resolve_model_dir(model: str) -> Path:
    """A local directory for ``model`` (a path, or a Hugging Face id fetched to the cache)."""
    path = Path(model)
    if path.is_dir():
        return path
    if path.exists() or model.startswith((".", "/")):
        raise FinetuneError(f"model {model} is not a model directory", 4)
    try:
        from huggingface_hub import list_repo_files, snapshot_download

        ignore = ["*.onnx", "onnx/*", "*.msgpack", "*.h5", "*.ot"]
        try:  # the .bin weights only where safetensors are there too (offline: the cache)
            if "model.safetensors" in list_repo_files(model):
                ignore.append("pytorch_model.bin")
        except Exception:  # noqa: BLE001 - offline or no listing: take what the cache has
            pass
        return Path(snapshot_download(model, ignore_patterns=ignore))
    except Exception as exc:  # noqa: BLE001 - any hub failure is "cannot load the model"
        raise FinetuneError(f"cannot fetch model {model}: {exc}", 4) from exc


def check_qlora() -> None:
    """Q-LoRA loads the base model in 4 bits with bitsandbytes, which needs a CUDA GPU."""
    import torch

    if not torch.cuda.is_available():
        raise FinetuneError(
            "--method qlora needs a CUDA GPU (4-bit weights through bitsandbytes) and none is "
            "available here; use --method lora (same adapters, full-precision base) or run "
            "on a GPU node", 5)
    try:
        import bitsandbytes  # noqa: F401
    except ImportError as exc:
        raise FinetuneError("--method qlora needs the bitsandbytes package "
                            "(pip install 'bge-predictor[qlora]')", 5) from exc


@dataclass
class Built:
    model: Any  # the FlagEmbedding training model (loss in forward)
    tokenizer: Any
    family: str
    heads: str | None
    query_prefix: str = ""
    passage_prefix: str = ""
    m3_heads: dict[str, Any] = field(default_factory=dict)  # BGE-M3 head modules
    pooling: str = "cls"


def _load_encoder(model_dir: Path, params: Params, trust_remote_code: bool) -> Any:
    import torch
    from transformers import AutoModel

    kwargs: dict[str, Any] = {"trust_remote_code": trust_remote_code}
    if params.method == "qlora":
        from transformers import BitsAndBytesConfig

        compute = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=compute)
        kwargs["device_map"] = {"": torch.cuda.current_device()}
    else:
        kwargs["dtype"] = torch.float32  # master weights; mixed precision is the Trainer's
    try:
        return AutoModel.from_pretrained(str(model_dir), **kwargs)
    except (OSError, ValueError) as exc:
        raise FinetuneError(f"cannot load model {params.model}: {exc}", 4) from exc


def _apply_lora(encoder: Any, params: Params) -> Any:
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    if params.method == "qlora":
        encoder = prepare_model_for_kbit_training(
            encoder, use_gradient_checkpointing=params.gradient_checkpointing)
    targets: Any = params.lora_target_modules
    if targets == ["all-linear"]:
        targets = "all-linear"
    config = LoraConfig(r=params.lora_r, lora_alpha=params.lora_alpha,
                        lora_dropout=params.lora_dropout, target_modules=targets,
                        bias="none")
    return get_peft_model(encoder, config)


def build(params: Params, model_dir: Path) -> Built:
    """The training model for ``params.model``: BGE-M3 or a dense family."""
    import torch
    from transformers import AutoTokenizer

    from predictor.runtime.detection import detect_family
    from predictor.runtime.family_defaults import dense_config
    from predictor.runtime.family_names import M3, ST

    try:
        detected = detect_family(str(model_dir), family=params.family, fallback=None)
    except ValueError as exc:
        raise FinetuneError(str(exc), 4) from exc
    family = detected.family
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    except (OSError, ValueError) as exc:
        raise FinetuneError(f"cannot load the tokenizer of {params.model}: {exc}", 4) from exc

    if family == M3:
        from FlagEmbedding.finetune.embedder.encoder_only.m3.modeling import (
            EncoderOnlyEmbedderM3Model,
        )

        heads = params.heads or "all"
        encoder = _load_encoder(model_dir, params, False)
        hidden = encoder.config.hidden_size
        head_modules = {"colbert_linear": torch.nn.Linear(hidden, hidden),
                        "sparse_linear": torch.nn.Linear(hidden, 1)}
        for name, module in head_modules.items():
            path = model_dir / f"{name}.pt"
            if path.is_file():
                module.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
            elif heads == "dense":
                raise FinetuneError(f"{model_dir} has no {name}.pt to keep; use --heads all", 4)
        if params.method != "full":
            encoder = _apply_lora(encoder, params)
        if params.method == "qlora":
            device = next(encoder.parameters()).device
            for module in head_modules.values():
                module.to(device)
        model = EncoderOnlyEmbedderM3Model(
            {"model": encoder, **head_modules}, tokenizer=tokenizer,
            temperature=params.temperature, sub_batch_size=-1, kd_loss_type="kl_div",
            sentence_pooling_method="cls", normalize_embeddings=True,
            unified_finetuning=heads == "all", use_self_distill=params.self_distill,
            self_distill_start_step=0)
        return Built(model, tokenizer, family, heads, m3_heads=head_modules)

    if params.heads not in (None, "dense"):
        raise FinetuneError(f"--heads {params.heads} is for BGE-M3; {params.model} is a "
                            f"{family} model with one dense output", 2)
    try:
        config = dense_config(str(model_dir), detected)
    except ValueError as exc:
        raise FinetuneError(str(exc), 4) from exc
    if len(config.pooling) != 1 or config.pooling[0] not in ("cls", "mean") \
            or config.dense_layers:
        raise FinetuneError(f"{params.model}: pooling {'+'.join(config.pooling)}"
                            f"{' with Dense layers' if config.dense_layers else ''} cannot be "
                            "fine-tuned here (cls or mean pooling only)", 4)
    if family == ST and not config.normalize:
        logger.warning("%s is not normalised; training on cosine similarity anyway", params.model)
    from FlagEmbedding.finetune.embedder.encoder_only.base.modeling import (
        BiEncoderOnlyEmbedderModel,
    )

    encoder = _load_encoder(model_dir, params, config.trust_remote_code)
    if params.method != "full":
        encoder = _apply_lora(encoder, params)
    model = BiEncoderOnlyEmbedderModel(
        encoder, tokenizer=tokenizer, temperature=params.temperature, sub_batch_size=-1,
        sentence_pooling_method=config.pooling[0], normalize_embeddings=True)
    return Built(model, tokenizer, family, None, config.query_prefix, config.passage_prefix,
                 pooling=config.pooling[0])


# --------------------------------------------------------------------------- progress

class Progress:
    """A tqdm bar and one JSON line per logged step on stderr (``finetune: {...}``).

    The JSON lines (``events.event_line``) are what ``predictor.api.http.dropin.training``
    reads back (``events.read_events``), from a child's log or a Job pod's log, for
    ``/train-status``.
    """

    def __init__(self, stream=None) -> None:
        self.stream = stream or sys.stderr
        self.bar = None

    def event(self, event: str, **fields: Any) -> None:
        line = event_line(event, **fields)
        if self.bar is not None:
            self.bar.write(line, file=self.stream)
        else:
            print(line, file=self.stream, flush=True)

    def callback(self, stop_flag: dict) -> Any:
        from tqdm.auto import tqdm
        from transformers import TrainerCallback

        progress = self

        class _Callback(TrainerCallback):
            def on_train_begin(self, args, state, control, **kwargs):
                progress.bar = tqdm(total=state.max_steps, initial=state.global_step,
                                    desc="fine-tuning", unit="step", file=progress.stream,
                                    mininterval=1.0, dynamic_ncols=True)
                progress.event("start", step=state.global_step, max_steps=state.max_steps)

            def on_step_end(self, args, state, control, **kwargs):
                if progress.bar is not None:
                    progress.bar.update(state.global_step - progress.bar.n)
                if stop_flag.get("signal"):
                    control.should_save = True
                    control.should_training_stop = True

            def on_log(self, args, state, control, logs=None, **kwargs):
                logs = logs or {}
                if "loss" in logs:
                    progress.event("progress", step=state.global_step,
                                   max_steps=state.max_steps, epoch=round(state.epoch or 0, 4),
                                   loss=logs["loss"],
                                   learning_rate=logs.get("learning_rate"))
                    if progress.bar is not None:
                        progress.bar.set_postfix(loss=f"{logs['loss']:.4f}")

            def on_train_end(self, args, state, control, **kwargs):
                if progress.bar is not None:
                    progress.bar.close()
                    progress.bar = None

        return _Callback()


# --------------------------------------------------------------------------- the run

def _trainer_class():
    from FlagEmbedding.abc.finetune.embedder import AbsEmbedderTrainer
    from safetensors.torch import load_file, save_file

    class CheckpointTrainer(AbsEmbedderTrainer):
        """Checkpoints hold the trainable tensors only (all of them for full training, the
        adapters and heads for LoRA); ``Trainer`` loads them back non-strictly on resume."""

        def _save(self, output_dir=None, state_dict=None):
            output_dir = output_dir or self.args.output_dir
            os.makedirs(output_dir, exist_ok=True)
            tensors = {name: p.detach().cpu().contiguous()
                       for name, p in self.model.named_parameters() if p.requires_grad}
            save_file(tensors, os.path.join(output_dir, "model.safetensors"),
                      metadata={"format": "pt"})

        def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
            model = model or self.model
            tensors = load_file(os.path.join(resume_from_checkpoint, "model.safetensors"))
            trainable = {n for n, p in model.named_parameters() if p.requires_grad}
            if set(tensors) != trainable:
                raise FinetuneError(f"{resume_from_checkpoint} does not fit this model "
                                    "(other trainable tensors); pass --overwrite", 6)
            model.load_state_dict(tensors, strict=False)

    return CheckpointTrainer


def _run_state(params: Params, pairs: Pairs) -> dict:
    return {"params": asdict(params), "data_sha256": pairs.sha256}


def prepare_output(output: Path, params: Params, pairs: Pairs, overwrite: bool) -> str | None:
    """Check ``output`` (emptied first with ``overwrite``); the checkpoint to resume from.

    A finished run (``training.json``) or a foreign non-empty directory is an error unless
    ``overwrite``; checkpoints of another run (other data or parameters) likewise.
    """
    ckpt_dir = output / CHECKPOINT_DIR
    state = _run_state(params, pairs)
    if overwrite and output.exists():
        for child in output.iterdir():
            shutil.rmtree(child) if child.is_dir() else child.unlink()
    if (output / TRAINING_FILE).exists():
        raise FinetuneError(f"{output} already holds a finished run ({TRAINING_FILE}); "
                            "choose another --output or pass --overwrite", 6)
    run_file = ckpt_dir / RUN_FILE
    if run_file.exists():
        previous = json.loads(run_file.read_text())
        if previous != json.loads(json.dumps(state)):
            changed = sorted(k for k in state["params"]
                             if previous.get("params", {}).get(k) != state["params"][k])
            if previous.get("data_sha256") != state["data_sha256"]:
                changed.append("data")
            raise FinetuneError(f"{output} holds checkpoints of another run (differs in "
                                f"{', '.join(changed) or 'format'}); pass --overwrite to "
                                "start over", 6)
        from transformers.trainer_utils import get_last_checkpoint

        return get_last_checkpoint(str(ckpt_dir)) if ckpt_dir.is_dir() else None
    if output.exists() and any(p.name != CHECKPOINT_DIR for p in output.iterdir()):
        raise FinetuneError(f"{output} is not empty and holds no run of this command; "
                            "choose another --output or pass --overwrite", 6)
    return None


def record_run(output: Path, params: Params, pairs: Pairs) -> None:
    """Tie ``output``'s checkpoints to this run (once the model has loaded: a run that fails
    before training leaves nothing behind to conflict with the corrected command)."""
    ckpt_dir = output / CHECKPOINT_DIR
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    run_file = ckpt_dir / RUN_FILE
    if not run_file.exists():
        run_file.write_text(json.dumps(_run_state(params, pairs), indent=2, sort_keys=True))


def _training_args(params: Params, ckpt_dir: Path) -> Any:
    import torch
    from transformers import TrainingArguments

    cuda = torch.cuda.is_available()
    bf16 = fp16 = False
    if params.precision == "auto" and cuda:
        bf16 = torch.cuda.is_bf16_supported()
        fp16 = not bf16
    elif params.precision == "bf16":
        bf16 = True
    elif params.precision == "fp16":
        fp16 = True
    checkpointing = {}
    if params.gradient_checkpointing:  # transformers 5 renamed it activation checkpointing
        name = ("activation_checkpointing" if "activation_checkpointing"
                in TrainingArguments.__dataclass_fields__ else "gradient_checkpointing")
        checkpointing = {name: True, f"{name}_kwargs": {"use_reentrant": False}}
    return TrainingArguments(
        output_dir=str(ckpt_dir), max_steps=params.max_steps, num_train_epochs=params.epochs,
        per_device_train_batch_size=params.batch_size, learning_rate=params.lr(),
        warmup_steps=params.warmup_ratio, logging_steps=params.logging_steps,
        logging_first_step=True, save_strategy="steps", save_steps=params.save_steps,
        save_total_limit=1, report_to=[], remove_unused_columns=False, disable_tqdm=True,
        seed=params.seed, data_seed=params.seed, use_cpu=not cuda, bf16=bf16, fp16=fp16,
        dataloader_num_workers=0, dataloader_drop_last=False, log_level="warning",
        save_only_model=False, **checkpointing)


def train(params: Params, pairs: Pairs, output: Path, *, overwrite: bool = False,
          keep_checkpoints: bool = False, progress: Progress | None = None) -> dict:
    """Fine-tune, export the model to ``output``; returns ``training.json``'s content."""
    if params.method not in METHODS:
        raise FinetuneError(f"--method must be one of {', '.join(METHODS)}", 2)
    if params.method == "qlora":
        check_qlora()
    progress = progress or Progress()
    resume = prepare_output(output, params, pairs, overwrite)
    model_dir = resolve_model_dir(params.model)

    import torch
    from FlagEmbedding.abc.finetune.embedder import AbsEmbedderCollator
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    built = build(params, model_dir)
    record_run(output, params, pairs)
    examples = [(built.query_prefix + q, [built.passage_prefix + p], None)
                for q, p in zip(pairs.queries, pairs.passages, strict=True)]
    collator = AbsEmbedderCollator(tokenizer=built.tokenizer, query_max_len=params.query_max_len,
                                   passage_max_len=params.passage_max_len, sub_batch_size=-1,
                                   padding=True, return_tensors="pt")
    ckpt_dir = output / CHECKPOINT_DIR
    args = _training_args(params, ckpt_dir)
    if params.gradient_checkpointing and params.method != "qlora":
        built.model.enable_input_require_grads()
    stop_flag: dict = {}
    trainer = _trainer_class()(model=built.model, args=args, train_dataset=examples,
                               data_collator=collator, processing_class=built.tokenizer,
                               callbacks=[progress.callback(stop_flag)])
    for noisy in (PrinterCallback, ProgressCallback):
        trainer.remove_callback(noisy)

    def _on_signal(signum, _frame):
        stop_flag["signal"] = signum
        progress.event("signal", signal=signal.Signals(signum).name,
                       note="saving a checkpoint and stopping")

    previous = {s: signal.signal(s, _on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    started = time.monotonic()
    try:
        if resume:
            progress.event("resume", checkpoint=resume)
        result = trainer.train(resume_from_checkpoint=resume)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    if stop_flag.get("signal"):
        raise FinetuneError(f"stopped by {signal.Signals(stop_flag['signal']).name} at step "
                            f"{trainer.state.global_step}; a checkpoint is saved and the same "
                            "command resumes from it", 75)
    losses = [{"step": e["step"], "loss": e["loss"]}
              for e in trainer.state.log_history if "loss" in e and "step" in e]
    progress.event("export", output=str(output))
    _export(built, params, model_dir, output)
    record = {
        "format": 1,
        "base_model": params.model,
        "family": built.family,
        "method": params.method,
        "heads": built.heads,
        "data": pairs.summary(),
        "parameters": asdict(params) | {"learning_rate": params.lr()},
        "loss": losses,
        "steps": trainer.state.global_step,
        "epochs": round(trainer.state.epoch or 0.0, 4),
        "time_s": round(time.monotonic() - started, 3),
        "train_runtime_s": result.metrics.get("train_runtime"),
        "resumed_from": resume,
        "device": "cuda" if torch.cuda.is_available() else "cpu",
        "versions": _versions(),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    (output / TRAINING_FILE).write_text(json.dumps(record, indent=2) + "\n")
    if not keep_checkpoints:
        shutil.rmtree(ckpt_dir, ignore_errors=True)
    progress.event("done", steps=record["steps"], output=str(output),
                   loss=losses[-1]["loss"] if losses else None)
    return record


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("torch", "transformers", "FlagEmbedding", "peft"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:  # pragma: no cover
            pass
    return out


def _merged_encoder(built: Built, params: Params, model_dir: Path) -> Any:
    """The encoder with its adapter merged (Q-LoRA: into a full-precision copy of the base)."""
    import tempfile

    import torch

    encoder = built.model.model
    if params.method == "full":
        return encoder
    if params.method == "lora":
        return encoder.merge_and_unload()
    from peft import PeftModel
    from transformers import AutoModel

    with tempfile.TemporaryDirectory() as tmp:
        encoder.save_pretrained(tmp)
        base = AutoModel.from_pretrained(str(model_dir), dtype=torch.float32)
        return PeftModel.from_pretrained(base, tmp).merge_and_unload()


def _export(built: Built, params: Params, model_dir: Path, output: Path) -> None:
    import torch

    output.mkdir(parents=True, exist_ok=True)
    encoder = _merged_encoder(built, params, model_dir)
    state = {k: v.detach().to("cpu", torch.float32).contiguous()
             for k, v in encoder.state_dict().items()}
    encoder.save_pretrained(str(output), state_dict=state)
    for name in COPIED_FILES:
        if (model_dir / name).is_file():
            shutil.copy2(model_dir / name, output / name)
    for name in COPIED_DIRS:
        if (model_dir / name).is_dir():
            shutil.copytree(model_dir / name, output / name, dirs_exist_ok=True)
    if not any((output / n).is_file() for n in ("tokenizer.json", "tokenizer_config.json")):
        built.tokenizer.save_pretrained(str(output))
    if not built.m3_heads:
        _describe_dense(built, output, encoder.config.hidden_size)
    if built.m3_heads:
        for name, module in built.m3_heads.items():
            if built.heads == "dense" and (model_dir / f"{name}.pt").is_file():
                shutil.copy2(model_dir / f"{name}.pt", output / f"{name}.pt")
            else:
                torch.save({k: v.detach().cpu().float() for k, v in module.state_dict().items()},
                           output / f"{name}.pt")


def _describe_dense(built: Built, output: Path, hidden: int) -> None:
    """sentence-transformers files saying how the dense output was trained (pooling,
    normalisation, prefixes), so the server detects it whatever the directory is called."""
    if not (output / "modules.json").is_file():
        modules = [{"idx": 0, "name": "0", "path": "",
                    "type": "sentence_transformers.models.Transformer"},
                   {"idx": 1, "name": "1", "path": "1_Pooling",
                    "type": "sentence_transformers.models.Pooling"},
                   {"idx": 2, "name": "2", "path": "2_Normalize",
                    "type": "sentence_transformers.models.Normalize"}]
        (output / "1_Pooling").mkdir(exist_ok=True)
        (output / "2_Normalize").mkdir(exist_ok=True)
        (output / "1_Pooling" / "config.json").write_text(json.dumps({
            "word_embedding_dimension": hidden,
            "pooling_mode_cls_token": built.pooling == "cls",
            "pooling_mode_mean_tokens": built.pooling == "mean"}, indent=2))
        (output / "modules.json").write_text(json.dumps(modules, indent=2))
    path = output / "config_sentence_transformers.json"
    st = json.loads(path.read_text()) if path.is_file() else {}
    if built.query_prefix or built.passage_prefix:
        st["prompts"] = {"query": built.query_prefix, "passage": built.passage_prefix}
        st["default_prompt_name"] = "passage" if built.passage_prefix else None
    path.write_text(json.dumps(st, indent=2))

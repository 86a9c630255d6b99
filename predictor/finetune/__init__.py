"""Fine-tuning an embedder on ``query<TAB>passage`` pairs: ``python -m predictor.finetune``.

The command the chart's ``finetune`` Job and seed 002's ``/fine-tune`` routes run, in the same
image as the predictor (docs/finetune.md). ``data`` reads the pairs, ``train`` builds
FlagEmbedding's contrastive model, runs ``transformers.Trainer`` (peft for LoRA / Q-LoRA) and
writes a model directory ``--embedder`` serves as it is; ``cli`` maps outcomes to exit codes.
``events`` (the progress lines and the finished run's record name) and ``job`` (the Kubernetes
Job) need no torch: they are all the training routes import.
"""

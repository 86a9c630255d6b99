"""What a training run tells the outside, with no torch: its progress lines and its record.

``python -m predictor.finetune`` writes one ``finetune: {...}`` JSON line per event on stderr
(``train.Progress``) and, when done, ``<output>/training.json``. The training routes
(``api/http/dropin/training.py``) read both back, from a child's log or a Job pod's log, for
``/train-status``; they import this module and never ``train`` (which needs torch).
"""

from __future__ import annotations

import json
import re
from typing import Any

#: Written last into the output directory by a finished run: a model of that name exists.
TRAINING_FILE = "training.json"
#: Start of every progress line.
PREFIX = "finetune: "


def event_line(event: str, **fields: Any) -> str:
    """One progress line: ``finetune: {"event": ..., ...}``."""
    return PREFIX + json.dumps({"event": event, **fields}, sort_keys=True)


def read_events(text: str) -> list[dict]:
    """The ``finetune: {...}`` events in a log (tqdm's carriage returns split lines too)."""
    events = []
    for line in re.split(r"[\r\n]+", text):
        start = line.find(PREFIX + "{")
        if start < 0:
            continue
        try:
            events.append(json.loads(line[start + len(PREFIX):]))
        except ValueError:
            continue
    return events


def status_from(events: list[dict], state: str, output: str, tail: str = "") -> dict:
    """Seed 002's status shape from the events and the run's state."""
    progress = next((e for e in reversed(events) if e.get("event") == "progress"), None)
    error = next((e for e in reversed(events) if e.get("event") == "error"), None)
    steps = int(progress["step"]) if progress else 0
    total = int(progress["max_steps"]) if progress and progress.get("max_steps") else 0
    body = {"status": state, "progress": int(100 * steps / total) if total else 0,
            "message": "", "error": None, "steps": steps,
            "epoch": int(progress.get("epoch") or 0) if progress else 0}
    if state == "pending":
        body["message"] = "Waiting to start..."
    elif state == "running":
        body["message"] = "Training..." if progress else "Loading the model..."
        if any(e.get("event") == "export" for e in events):
            body["message"] = "Saving the model..."
    elif state == "completed":
        body.update(progress=100, message=f"Training completed; model saved to {output}")
    else:
        body["message"] = "Training failed"
        body["error"] = (error or {}).get("message") or tail.strip()[-2000:] or "unknown error"
    return body

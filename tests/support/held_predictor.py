"""``python tests/support/held_predictor.py ARGS``: ``python -m predictor`` whose model steps a
test can hold with files in ``$HOLD_DIR``, so shutdown tests set the pace instead of guessing
timings.

- ``tok-<marker>``: while it exists, tokenising texts that contain ``<marker>`` waits
  (``tok-<marker>.entered`` appears once one has started waiting);
- ``forward``: while it exists, every batch waits on the worker thread (``forward.entered``).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

HOLD = Path(os.environ["HOLD_DIR"])
# This checkout's predictor, not an installed one (a script's sys.path starts at its folder).
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def _wait(name: str) -> None:
    if (HOLD / name).exists():
        (HOLD / f"{name}.entered").touch()
    while (HOLD / name).exists():
        time.sleep(0.02)


def _held_tokenize(tokenize):
    def wrapper(self, texts, *args, **kwargs):
        for path in HOLD.glob("tok-*"):
            if not path.name.endswith(".entered") and any(path.name[4:] in t for t in texts):
                _wait(path.name)
        return tokenize(self, texts, *args, **kwargs)
    return wrapper


def _held_forward(run_batch):
    def wrapper(self, items):
        _wait("forward")
        return run_batch(self, items)
    return wrapper


if __name__ == "__main__":
    from predictor.runtime import m3

    m3.M3Runner.tokenize = _held_tokenize(m3.M3Runner.tokenize)
    m3.M3Runner.run_batch = _held_forward(m3.M3Runner.run_batch)
    from predictor.cli import main

    main(sys.argv[1:])

"""Test-only launcher: ``python -m predictor`` whose batches wait at a gate the test opens.

    python tests/support/gated_server.py GATE_FILE [predictor flags...]

Every model's batch runner is wrapped so that each batch waits until ``GATE_FILE`` exists. A
test can then queue work behind a held batch and watch what the server does with it (drop it,
time it out, refuse more) at its own pace, whatever the machine's speed. Never imported by the
package: the production path has no gate.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import predictor.cli as cli  # noqa: E402


class GatedRunner:
    """Waits for the gate file before each batch; everything else is the wrapped runner's."""

    def __init__(self, runner, gate: Path):
        self.runner = runner
        self.gate = gate

    def __getattr__(self, name):
        return getattr(self.runner, name)

    def run_batch(self, items):
        while not self.gate.exists():
            time.sleep(0.02)
        return self.runner.run_batch(items)


def main() -> None:
    gate = Path(sys.argv[1])
    build_models = cli.build_models

    def gated_models(settings):
        models = build_models(settings)
        for model in models:
            model.batcher.runner = GatedRunner(model.batcher.runner, gate)
        return models

    cli.build_models = gated_models
    cli.main(sys.argv[2:])


if __name__ == "__main__":
    main()

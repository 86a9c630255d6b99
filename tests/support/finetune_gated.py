"""``python -m predictor.finetune`` with a gate the test holds, so a signal lands mid-training.

The toy run takes well under a second, so a test that waits for step 3 and then sends SIGTERM
races the end of training. Run as
``python tests/support/finetune_gated.py GATE_STEP GATE_FILE ARGS...``: after step GATE_STEP
is logged, training waits until GATE_FILE exists, then goes on through the real callbacks
(which see the signal the test sent meanwhile).
"""

from __future__ import annotations

import os
import sys
import time

from predictor.finetune import train


def _gated(gate_step: int, gate_file: str):
    original = train.Progress.callback

    def callback(self, stop_flag):
        made = original(self, stop_flag)
        inner = made.on_step_end

        def on_step_end(args, state, control, **kwargs):
            if state.global_step == gate_step + 1:  # step gate_step has been logged by now
                while not os.path.exists(gate_file):
                    time.sleep(0.05)
            return inner(args, state, control, **kwargs)

        made.on_step_end = on_step_end
        return made

    return callback


if __name__ == "__main__":
    train.Progress.callback = _gated(int(sys.argv[1]), sys.argv[2])
    from predictor.finetune.cli import main

    sys.exit(main(sys.argv[3:]))

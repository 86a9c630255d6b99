"""``python -m predictor.finetune`` (see ``cli.py``)."""

import sys

from predictor.finetune.cli import main

if __name__ == "__main__":
    sys.exit(main())

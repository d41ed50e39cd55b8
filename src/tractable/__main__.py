"""``python -m tractable``: the same as the ``tractable`` command (torchrun needs this form)."""

import sys

from .cli import main

sys.exit(main())

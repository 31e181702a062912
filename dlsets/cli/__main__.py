"""``python -m dlsets.cli``, as ``python -m dlsets`` (0.1's cli.py ran as a script too)."""

import sys

from .app import main

sys.exit(main())

"""``python -m wxauth.testing``: run the emulator server standalone.

Same options as ``wxauth emulator`` (see ``--help``).
"""

from __future__ import annotations

import sys

from wxauth.testing._cli import emulator_main

if __name__ == "__main__":
    sys.exit(emulator_main())

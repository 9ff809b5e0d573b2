"""``python3 -m pycontain`` is the same as the ``pycontain`` command."""

import sys

from .cli import main

sys.exit(main())

"""``python -m dmixed``: the same as the ``dmixed`` command."""

import sys

from .cli import main

sys.exit(main())

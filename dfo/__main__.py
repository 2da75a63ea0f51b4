"""``python -m dfo ...``: the ``dfo`` command, for environments without the console script."""

import sys

from dfo.cli import main

sys.exit(main())

"""``python -m fl_sim``: the ``fl-sim`` command."""

import sys

from fl_sim.cli import main

sys.exit(main())

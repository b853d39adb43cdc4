"""The paper's tables and figures by one command each (``fl-sim reproduce NAME``)."""

from __future__ import annotations

from experiments.paper.fig5 import Fig5
from experiments.paper.table4 import Table4
from experiments.paper.table5 import Table5
from experiments.paper.table6 import Table6

REPRODUCTIONS = {cls.name: cls for cls in (Table4, Table5, Table6, Fig5)}
"""Registry of reproduction name -> class (each has ``run(Context) -> ReproTable``)."""

"""Dataset loaders, one module per data source; registered in :mod:`fl_sim.data.registry`."""

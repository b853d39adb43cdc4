"""The ``fl-sim`` subcommands, one module per group; ``fl_sim.cli`` parses and dispatches."""

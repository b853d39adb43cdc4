"""Results: the leakage-row schema, the SQLite store, resuming, CSV/plot/summary reports and
the self-contained HTML report."""

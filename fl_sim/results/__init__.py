"""Results: the leakage-row schema, the SQLite store, resuming, CSV/plot/summary reports."""

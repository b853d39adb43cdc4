"""What only the evaluator knows: the audit channel (ground truth), judges, scoring, metrics."""

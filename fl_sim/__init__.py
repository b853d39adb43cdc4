"""Flower apps, eavesdropping strategy, audit, judge, data, results and CLI of the testbed."""

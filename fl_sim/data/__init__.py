"""Datasets: the registry, one loader per source, event emulation, reference l2 distances."""

"""Simulation set-up: effective parameters, movie plumes, synthetic datasets."""

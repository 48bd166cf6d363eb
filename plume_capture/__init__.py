"""plume-capture: a Ray-distributed, Numba-fast capture engine for odor-plume navigation."""
__version__ = "0.1.0"

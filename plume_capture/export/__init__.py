"""Exports of a run directory to learners' formats: Minari (HDF5), RLlib offline Parquet and
Hugging Face datasets. Each target streams the run in per-episode chunks (``reader``) and writes
aside, renaming into place only when complete."""
from plume_capture.export.hf import export_hf
from plume_capture.export.minari import export_minari
from plume_capture.export.reader import ExportError
from plume_capture.export.rllib import export_rllib

TARGETS = {"minari": export_minari, "rllib": export_rllib, "hf": export_hf}

__all__ = ["TARGETS", "ExportError", "export_hf", "export_minari", "export_rllib"]

"""Publishing captured runs as versioned datasets: provenance manifest (manifest.py), the DVC-tracked
dataset tree and its index (dataset.py), and a dvc.yaml stage generator for captures (stage.py)."""

"""The capture engine: shard plan, shard runner, Ray orchestration, writers and finalizer."""
from plume_capture.capture.engine import CaptureResult, capture, capture_many

__all__ = ["CaptureResult", "capture", "capture_many"]

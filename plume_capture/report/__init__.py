"""Run and sweep reports (issue 19): one self-contained HTML page, optionally the same figures as PNG.

``data`` reads what a report needs from run directories, ``figures`` draws it with matplotlib,
``page`` lays it out as HTML.
"""
from plume_capture.report.data import ReportError, RunSummary, expand_run_dirs, summarize_run
from plume_capture.report.page import build_report

__all__ = ["ReportError", "RunSummary", "build_report", "expand_run_dirs", "summarize_run"]

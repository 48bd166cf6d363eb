"""The load snippets of docs/publishing.md, executed in order against a published run."""
import re
from pathlib import Path

from plume_capture.cli.publish import main

DOC = Path(__file__).resolve().parents[2] / "docs" / "publishing.md"


def test_catalog_snippets_run(repo, two_runs):
    assert main([str(two_runs[0]), "--repo", str(repo)]) == 0
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    assert len(blocks) == 6
    ns = {"RUN": str(repo / "data/captures/exp" / two_runs[0].name)}
    for code in blocks:
        exec(compile(code, str(DOC), "exec"), ns)  # noqa: S102 - the documentation's own code
    assert ns["count"] == ns["n_steps"] > 0 and len(ns["parts"]("steps")) > 1  # rotated parts

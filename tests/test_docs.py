"""The repository stands alone: no file refers to notes outside it, and every citation of
docs/spec.md names a section that exists."""
import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SPEC = REPO / "docs" / "spec.md"
# Built from pieces so that this file does not match itself.
OUTSIDE = re.compile("|".join([r"\.\./" + "shared", "/work/" + "shared", "SPEC" + r"\.md", "RAY_" + "NOTES",
                               "STORAGE_" + "NOTES", "PLUME_" + "NOTES", "PUBLISH_EXPORT_" + "NOTES",
                               "ops_" + "runbook"]))


def _tracked() -> list[Path]:
    out = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, capture_output=True,
                         text=True, check=True).stdout.split("\n")
    return [REPO / f for f in out if f and (REPO / f).is_file()]


def _text(p: Path) -> str | None:
    try:
        return p.read_text(encoding="utf-8")
    except (UnicodeDecodeError, OSError):
        return None


def test_no_file_refers_to_notes_outside_the_repository():
    hits = [f"{p.relative_to(REPO)}: {m.group(0)}" for p in _tracked() if (t := _text(p)) is not None
            for m in OUTSIDE.finditer(t)]
    assert hits == []


def test_docs_and_code_name_no_path_of_this_machine():
    roots = ("README.md", "docs/", "plume_capture/", "tests/", "conf/")
    hits = [f"{p.relative_to(REPO)}: {m.group(0)}" for p in _tracked()
            if str(p.relative_to(REPO)).startswith(roots) and (t := _text(p)) is not None
            for m in re.finditer(r"/work/[\w.-]+", t)]
    assert hits == []


def _sections() -> set[str]:
    return {m.group(1) for m in re.finditer(r"^#{2,3} (\d+(?:\.\d+)?)\.? ", SPEC.read_text(), re.M)}


def test_every_spec_citation_names_a_section():
    sections = _sections()
    assert {"1", "3.2", "7.1", "9.4", "13"} <= sections
    cites = []
    for p in _tracked():
        t = _text(p)
        if t is None or p.suffix not in (".py", ".md", ".yaml"):
            continue
        for m in re.finditer(r"(?:docs/spec\.md|spec) (§[\d.§–\-, ]+)", t):
            for num in re.findall(r"§(\d+(?:\.\d+)?)", m.group(1)):
                cites.append((str(p.relative_to(REPO)), num.rstrip(".")))
    assert len(cites) > 40
    assert [c for c in cites if c[1] not in sections] == []


def test_spec_anchors_used_by_the_docs_exist():
    """Links such as ``spec.md#71-random-streams`` point at a heading of docs/spec.md."""
    anchors = {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-")
               for h in re.findall(r"^#+ (.*)$", SPEC.read_text(), re.M)}
    links = [(p.name, a) for p in [*(REPO / "docs").glob("*.md"), REPO / "README.md"]
             for a in re.findall(r"spec\.md#([\w\-]+)", p.read_text())]
    assert links and [x for x in links if x[1] not in anchors] == []


USER_DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def test_user_docs_speak_to_users():
    """No references a user cannot follow (an internal runbook, issue numbers, who wrote what)."""
    bad = re.compile(r"runbook|\bissues? \d+|other agents|agents' work", re.I)
    assert [(p.name, m.group(0)) for p in USER_DOCS for m in bad.finditer(p.read_text())] == []


def test_install_lines_use_the_checkout_form():
    """The package is installed from the checkout (it is on no package index)."""
    bad = re.compile(r"pip install ['\"]?plume-capture")
    hits = [(str(p.relative_to(REPO)), m.group(0)) for p in _tracked()
            if p.suffix in (".py", ".md") and (t := _text(p)) is not None for m in bad.finditer(t)]
    assert hits == []


def test_ray_auth_mode_values_are_listed():
    text = (REPO / "docs" / "cluster.md").read_text()
    assert "`disabled`" in text and "`token`" in text and '"RAY_AUTH_MODE": "..."' not in text


def test_report_html_is_ignored_by_git():
    """plume-nav-report writes report.html into the working directory by default."""
    done = subprocess.run(["git", "check-ignore", "-q", "report.html"], cwd=REPO)
    assert done.returncode == 0


@pytest.mark.parametrize("cli", ["capture", "validate", "publish", "export", "report"])
def test_help_has_no_markup(cli):
    import sys

    done = subprocess.run([sys.executable, "-c", f"from plume_capture.cli.{cli} import main; main(['--help'])"],
                          capture_output=True, text=True, timeout=120)
    assert "usage:" in done.stdout and "``" not in done.stdout and ":func:" not in done.stdout


def _anchors(md: Path) -> set[str]:
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-")
            for h in re.findall(r"^#+ (.*)$", md.read_text(), re.M)}


def test_every_link_of_the_docs_resolves():
    """Each relative link of README.md and docs/ names a file of the repository (and a heading of it)."""
    bad, n = [], 0
    for p in USER_DOCS:
        prose = re.sub(r"```.*?```", "", p.read_text(), flags=re.S)
        for link in re.findall(r"\]\(([^)\s]+)\)", prose):
            if re.match(r"[a-z]+:", link):
                continue
            n += 1
            path, _, anchor = link.partition("#")
            target = (p.parent / path).resolve() if path else p
            if not target.is_relative_to(REPO) or not target.exists():
                bad.append((p.name, link))
            elif anchor and target.suffix == ".md" and anchor not in _anchors(target):
                bad.append((p.name, link))
    assert n > 40 and bad == []


def test_every_cited_results_file_exists():
    """A figure names its results file under benchmarks/results/; that file is in the repository."""
    cited = set()
    for p in USER_DOCS:
        for m in re.finditer(r"benchmarks/results/([\w.\-]+?)(?:\.\{([\w,]+)\})?(?=[`)\s,;:]|$)", p.read_text(), re.M):
            name, exts = m.groups()
            if "<" in name or name.endswith("-"):
                continue  # a pattern such as report-<date>-<host>.json
            cited |= {f"{name}.{e}" for e in exts.split(",")} if exts else {name.rstrip(".")}
        # a table's file column names a dated results file without its folder
        cited |= set(re.findall(r"`([\w.\-]*\d{4}-\d\d-\d\d[\w.\-]*\.(?:json|md|png))`", p.read_text()))
    missing = sorted(f for f in cited if not (REPO / "benchmarks" / "results" / f).is_file())
    assert len(cited) > 10 and missing == []

"""The report page: one self-contained HTML file (figures embedded as base64 PNG)."""
from __future__ import annotations

import base64
import contextlib
import html
import os
import shutil
import tempfile

from plume_capture import interrupts
from plume_capture.errors import OperationalError
from plume_capture.report import figures
from plume_capture.report.data import DEFAULT_SAMPLE, expand_run_dirs, summarize_run

_CSS = """body{font-family:sans-serif;margin:1.5em;color:#222}table{border-collapse:collapse;
font-size:13px}td,th{border:1px solid #bbb;padding:3px 7px;text-align:left}th{background:#eee}
.row{display:flex;flex-wrap:wrap;gap:12px}.run{border:1px solid #ddd;padding:8px;width:560px}
.run.single{width:auto}.run.single .figs{display:flex;flex-wrap:wrap;gap:12px;align-items:flex-start}
img{max-width:100%}
.note{color:#333;background:#eef2f7;border-left:3px solid #7a8fa6;padding:4px 8px}.prov{font-size:12px;color:#555}"""


def _fmt(v) -> str:
    if isinstance(v, float):
        return str(v) if len(str(v)) <= 10 else f"{v:.6g}"
    return "null" if v is None else str(v)


def _img(png: bytes, name: str) -> str:
    return (f'<img data-figure="{html.escape(name)}" alt="{html.escape(name)}" '
            f'src="data:image/png;base64,{base64.b64encode(png).decode()}">')


def differing_settings(runs) -> list[str]:
    """Config keys whose values are not the same in every run (none for a single run)."""
    if len(runs) < 2:
        return []
    flat = [r.settings() for r in runs]
    keys = sorted(set().union(*flat))
    return [k for k in keys if len({repr(f.get(k)) for f in flat}) > 1]


def swept_keys(runs) -> list[str]:
    """The settings that differ between the runs, in the order the runs' overrides name them (a
    sweep's first axis first), then the rest alphabetically."""
    keys = differing_settings(runs)
    order = []
    for r in runs:
        for ov in (r.meta.get("extra") or {}).get("overrides") or []:
            k = str(ov).lstrip("+~").split("=", 1)[0]
            if k in keys and k not in order:
                order.append(k)
    return order + [k for k in keys if k not in order]


def _value_order(v):
    """Sort key of a setting's value: null, then numbers by value, then lists, then text."""
    if v is None:
        return (0, 0)
    if isinstance(v, (bool, int, float)):
        return (1, float(v))
    if isinstance(v, (list, tuple)):
        return (2, tuple(_value_order(x) for x in v))
    return (3, str(v))


def order_runs(runs) -> tuple[list, list[str]]:
    """The runs in the order of the sweep's grid — by the swept values, the first swept key varying
    slowest, as a sweep enumerates them — and the swept keys."""
    keys = swept_keys(runs)
    ordered = sorted(runs, key=lambda r: (tuple(_value_order(r.settings().get(k)) for k in keys), r.label))
    return ordered, keys


def swept_label(run, keys, short: bool = False) -> str:
    """``key=value, ...`` of the swept keys, else the run's label. With ``short``, each key by its
    last name component, unless two keys share it (``wind.noise_std``, ``puff.noise_std``)."""
    if not keys:
        return run.label
    names = [k.rsplit(".", 1)[-1] for k in keys] if short else list(keys)
    if len(set(names)) < len(names):
        names = list(keys)
    return ", ".join(f"{n}={_fmt(run.settings().get(k))}" for n, k in zip(names, keys))


def build_report(paths, out_html, png_dir=None, sample: int = DEFAULT_SAMPLE) -> dict:
    """Write the report of the runs named by ``paths`` (run or sweep directories).

    Returns ``{"runs": [RunSummary], "figures": [names], "notes": [str]}``; raises ReportError.
    """
    dirs = expand_run_dirs(paths)
    runs, keys = order_runs([summarize_run(d, sample) for d in dirs])
    figs = []  # (name, png)
    notes = []
    grids = sorted({r.grid for r in runs})
    if len(grids) > 1:
        notes.append("runs have different grids (" + ", ".join(f"{w}x{h}" for w, h in grids)
                     + "): no shared field picture, each run drawn on its own")
    for r in runs:
        if r.field_note:
            notes.append(f"{r.label}: {r.field_note}")
    with figures.plain_text():
        for i, r in enumerate(runs, 1):
            figs.append((f"run{i}_trajectories", figures.trajectories(r, swept_label(r, keys))))
            figs.append((f"run{i}_histograms", figures.histograms(r, swept_label(r, keys))))
        if len(runs) > 1:
            figs.append(("success_comparison",
                         figures.success_comparison(runs, [swept_label(r, keys, short=True) for r in runs])))

    rows = []
    for i, r in enumerate(runs, 1):
        lo, hi = r.success_interval
        sps = r.steps_per_s
        cells = [f"run {i}", html.escape(r.label)] + [html.escape(_fmt(r.settings().get(k)))
                                                      for k in keys]
        cells += [str(r.n_episodes), str(r.successes), f"{r.success_rate:.4f}",
                  f"[{lo:.4f}, {hi:.4f}]", f"{r.mean_length:.2f}",
                  "-" if sps is None else f"{sps:,.0f}"]
        rows.append('<tr class="run-row">' + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    head = ["", "run"] + [html.escape(k) for k in keys] + [
        "episodes", "reached goal", "success rate", "95% interval (Wilson)", "mean length",
        "capture steps/s"]
    fig_map = dict(figs)
    sections = []
    single = " single" if len(runs) == 1 else ""
    for i, r in enumerate(runs, 1):
        prov = " · ".join(f"{k}: {html.escape(_fmt(v))}" for k, v in r.provenance().items())
        sections.append(
            f'<div class="run{single}"><h3>run {i}: {html.escape(swept_label(r, keys))}</h3>'
            f'<p class="prov">{prov}</p><div class="figs">'
            + _img(fig_map[f"run{i}_trajectories"], f"run{i}_trajectories") + ("" if single else "<br>")
            + _img(fig_map[f"run{i}_histograms"], f"run{i}_histograms") + "</div></div>")
    body = [f"<h1>plume-capture report: {len(runs)} run{'s' if len(runs) > 1 else ''}</h1>"]
    body += [f'<p class="note">{html.escape(n)}</p>' for n in notes]
    body.append('<table id="runs"><tr>' + "".join(f"<th>{h}</th>" for h in head) + "</tr>"
                + "".join(rows) + "</table>")
    if "success_comparison" in fig_map:
        body.append("<h2>success rate</h2>" + _img(fig_map["success_comparison"],
                                                     "success_comparison"))
    body.append('<h2>runs</h2><div class="row">' + "".join(sections) + "</div>")
    page = ('<!DOCTYPE html><html><head><meta charset="utf-8"><title>plume-capture report</title>'
            f"<style>{_CSS}</style></head><body>" + "\n".join(body) + "</body></html>\n")
    _write_all(os.fspath(out_html), page, png_dir, figs)
    return {"runs": runs, "figures": [n for n, _ in figs], "notes": notes}


def _write_all(out_html: str, page: str, png_dir, figs) -> None:
    """Write the page and (into ``png_dir``) the figures, all or nothing: each goes to a temporary
    name of its own beside its target and is renamed into place only once all are written. On
    failure nothing is left (a ``png_dir`` this call created is removed); an ``OSError`` becomes
    :class:`OperationalError` naming the path."""
    made_dir, temps, what = None, [], out_html
    try:
        if png_dir is not None:
            png_dir = os.fspath(png_dir)
            what = f"the figures into {png_dir}"
            if not os.path.isdir(png_dir):
                made_dir = os.path.abspath(png_dir)
                while not os.path.isdir(os.path.dirname(made_dir)):
                    made_dir = os.path.dirname(made_dir)
                os.makedirs(png_dir)
            for name, png in figs:
                final = os.path.join(png_dir, name + ".png")
                temps.append((_temp_with(final, png), final))
        what = out_html
        temps.append((_temp_with(out_html, page.encode("utf-8")), out_html))
        interrupts.check()  # a signal whose KeyboardInterrupt was lost: never commit after it
        for tmp, final in temps:
            os.replace(tmp, final)
    except BaseException as exc:
        for tmp, _ in temps:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        if made_dir is not None:
            shutil.rmtree(made_dir, ignore_errors=True)
        if not isinstance(exc, OSError):
            raise
        # e.g. under /proc, a read-only or full file system
        raise OperationalError(f"cannot write {what}: {(exc.strerror or str(exc)).lower()}") from None


def _temp_with(final: str, data: bytes) -> str:
    """A new file beside ``final`` holding ``data``, with the permissions a plain ``open`` gives."""
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(final) + ".", suffix=".tmp",
                               dir=os.path.dirname(os.path.abspath(final)))
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return tmp

"""The Models page: every model under the deployment's export roots — its versions (time, run, trainer, test
metrics, infra-validation latency, drift of the data it learned from), the champion and the champion history, and
a plot of the gate's metric across versions. Plain HTML and an inline SVG: the Airflow api-server renders it (no
TensorFlow, no matplotlib there), and the page works without JavaScript.

`model_summary` / `model_view` gather the data from a model store (local or gs://); `list_html` / `model_html` /
`confirm_html` render it. Links are the caller's (the Airflow plugin knows its URLs): each version may carry a
`links` dict of label → URL.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

from kest_tasks.registry import catalog
from kest_tasks.registry.model_store import Store

STYLE = (
    "body{font-family:sans-serif;margin:1.5em;color:#222}table{border-collapse:collapse;margin:.5em 0 1.5em}"
    "td,th{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}th{background:#f4f4f4}"
    "tr.champion td{background:#eef8ee}.muted{color:#777}.notice{padding:.6em 1em;background:#eef4ff;"
    "border:1px solid #9ab}.error{padding:.6em 1em;background:#fff0f0;border:1px solid #c99}"
    "a{color:#0b5cad}button{padding:4px 10px}svg text{font-size:11px;fill:#444}.drift{color:#a50}"
)


def _escape(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _page(title: str, body: Sequence[str]) -> str:
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{_escape(title)}</title>"
        f"<style>{STYLE}</style></head><body>{''.join(body)}</body></html>"
    )


def _link(url: str | None, label: str) -> str:
    # No target: Airflow frames the page in a sandbox without popups or top navigation, so links open in the frame.
    return f"<a href='{_escape(url)}'>{_escape(label)}</a>" if url else ""


def _number(value: Any, digits: int = 4) -> str:
    return f"{value:.{digits}g}" if isinstance(value, int | float) else "—"


def gate_metric(metrics: Sequence[dict[str, float]], preferred: Sequence[str]) -> str | None:
    """The metric to plot: the first of `preferred` (the gate's) that versions have, else the first they share."""
    names = [name for version in metrics for name in version if "/" not in name]
    for name in preferred:
        if name in names:
            return name
    return names[0] if names else None


# After the gate's metrics, the ones a reader looks for first; the page shows at most KEY_METRICS columns.
USUAL_METRICS = ("loss", "auc", "f1_macro", "rmse", "mae", "r2")
KEY_METRICS = 4


def key_metrics(metrics: Sequence[dict[str, float]], preferred: Sequence[str]) -> list[str]:
    """The metric columns of the versions table: the gate's, then the usual ones, then the rest, at most
    KEY_METRICS (every metric is in the version's report)."""
    present = sorted({name for version in metrics for name in version if "/" not in name})
    ordered = [*preferred, *USUAL_METRICS, *present]
    return list(dict.fromkeys(name for name in ordered if name in present))[:KEY_METRICS]


def model_summary(store: Store, model: str) -> dict[str, Any]:
    """One row of the model list: name, champion, version count, the newest version's time."""
    versions = catalog.versions(store, model)
    champion = catalog.champion(store, model) or {}
    return {
        "model": model,
        "champion": champion.get("version"),
        "champion_metrics": champion.get("metrics", {}),
        "versions": len(versions),
        "latest": catalog.published_at(versions[-1]["version"]) if versions else "",
    }


def model_view(store: Store, model: str, preferred_metrics: Sequence[str] = ()) -> dict[str, Any]:
    """Everything the model's page shows: versions (oldest first), champion, history, the plotted metric."""
    versions = catalog.versions(store, model)
    if not versions and catalog.champion(store, model) is None:
        raise catalog.CatalogError(f"no model {model!r} in {store.root}")
    champion = catalog.champion(store, model) or {}
    for version in versions:
        version["published_at"] = catalog.published_at(version["version"])
        version["champion"] = version["version"] == champion.get("version")
    metric = gate_metric([v.get("metrics", {}) for v in versions], preferred_metrics)
    return {
        "metric_columns": key_metrics([v.get("metrics", {}) for v in versions], preferred_metrics),
        "model": model,
        "root": store.root,
        "champion": champion.get("version"),
        "versions": versions,
        "history": catalog.history(store, model),
        "metric": metric,
    }


def metric_plot(view: dict[str, Any], width: int = 640, height: int = 220) -> str:
    """An SVG line of the plotted metric across versions (oldest left), champion drawn larger; '' if none."""
    metric = view["metric"]
    points = [(v["version"], v.get("metrics", {}).get(metric), v["champion"]) for v in view["versions"]]
    points = [(name, value, champ) for name, value, champ in points if isinstance(value, int | float)]
    if not metric or not points:
        return ""
    low, high = min(p[1] for p in points), max(p[1] for p in points)
    span = (high - low) or max(abs(high), 1.0) * 0.1
    low, high = low - span * 0.1, high + span * 0.1
    left, right, top, bottom = 60, 20, 20, 40

    def x(index: int) -> float:
        return left + (width - left - right) * (index / max(len(points) - 1, 1) if len(points) > 1 else 0.5)

    def y(value: float) -> float:
        return top + (height - top - bottom) * (1 - (value - low) / (high - low))

    line = " ".join(f"{x(i):.1f},{y(value):.1f}" for i, (_, value, _) in enumerate(points))
    marks = "".join(
        f"<circle cx='{x(i):.1f}' cy='{y(value):.1f}' r='{6 if champ else 3.5}' fill='{'#2a2' if champ else '#36c'}'>"
        f"<title>{_escape(name)}: {_escape(metric)} {value:.6g}{' (champion)' if champ else ''}</title></circle>"
        for i, (name, value, champ) in enumerate(points)
    )
    axis = (
        f"<line x1='{left}' y1='{height - bottom}' x2='{width - right}' y2='{height - bottom}' stroke='#999'/>"
        f"<line x1='{left}' y1='{top}' x2='{left}' y2='{height - bottom}' stroke='#999'/>"
        f"<text x='4' y='{y(high) + 4:.1f}'>{high:.4g}</text><text x='4' y='{y(low) + 4:.1f}'>{low:.4g}</text>"
        f"<text x='{left}' y='{height - 12}'>{_escape(points[0][0])}</text>"
        f"<text x='{width - right}' y='{height - 12}' text-anchor='end'>{_escape(points[-1][0])}</text>"
    )
    return (
        f"<svg role='img' aria-label='{_escape(metric)} across versions' width='{width}' height='{height}' "
        f"viewBox='0 0 {width} {height}'>{axis}<polyline points='{line}' fill='none' stroke='#36c' "
        f"stroke-width='1.5'/>{marks}</svg>"
    )


def _drift_cell(version: dict[str, Any]) -> str:
    drift = version.get("drift")
    if drift is None:
        return "<span class='muted'>—</span>"
    if not drift:
        return "none"
    items = [
        f"{_escape(item['feature'])} {_escape(item['statistic'])} {item['distance']:.3g} &gt; {item['threshold']:.3g}"
        for item in drift
    ]
    return "<span class='drift'>" + "<br>".join(items) + "</span>"


def list_html(roots: Sequence[dict[str, Any]]) -> str:
    """The model list: per export root, its models (each a `model_summary` plus a `link`), or why it failed."""
    body = ["<h1>Models</h1>"]
    for root in roots:
        body.append(f"<h2>{_escape(root['root'])}</h2>")
        if root.get("error"):
            body.append(f"<p class='error'>{_escape(root['error'])}</p>")
            continue
        if not root["models"]:
            body.append("<p class='muted'>No published model yet.</p>")
            continue
        rows = [
            "<tr>"
            f"<td>{_link(m['link'], m['model'])}</td><td>{_escape(m['champion'] or 'none')}</td>"
            f"<td>{m['versions']}</td><td>{_escape(m['latest'])}</td>"
            f"<td>{_escape(', '.join(f'{k} {_number(v)}' for k, v in sorted(m['champion_metrics'].items())))}</td>"
            "</tr>"
            for m in root["models"]
        ]
        body.append(
            "<table><tr><th>model</th><th>champion</th><th>versions</th><th>newest</th><th>champion's test "
            "metrics</th></tr>" + "".join(rows) + "</table>"
        )
    return _page("kest models", body)


def model_html(view: dict[str, Any], notice: str = "", can_promote: bool = False, back: str = "") -> str:
    """A model's page: the champion, the plot, the versions (newest first) and the champion history."""
    model, metric = view["model"], view["metric"]
    metric_names = view["metric_columns"]
    body = [
        f"<p>{_link(back, '← all models')}</p>" if back else "",
        f"<h1>{_escape(model)}</h1>",
        f"<p class='notice'>{_escape(notice)}</p>" if notice else "",
        f"<p>In {_escape(view['root'])}. Champion: <strong class='champion'>{_escape(view['champion'] or 'none yet')}"
        "</strong></p>",
    ]
    plot = metric_plot(view)
    if plot:
        body += [f"<h2>{_escape(metric)} across versions</h2>", plot]
    head = ["version", "published", "run", "trainer", *metric_names, "blessed", "infra p50 / p99 ms", "drift", ""]
    rows = []
    for version in reversed(view["versions"]):
        links = version.get("links", {})
        run = version.get("dag_run_id") or version.get("run_uri", "").rstrip("/").rsplit("/", 1)[-1]
        actions = [_link(links.get("report"), "report"), _link(links.get("files"), "files")]
        if version["champion"]:
            actions.append("<strong>champion</strong>")
        elif can_promote and links.get("promote"):
            actions.append(_link(links["promote"], "make champion…"))
        cells = [
            _escape(version["version"]),
            _escape(version["published_at"]),
            _link(links.get("run"), run) or _escape(run),
            _escape(version.get("trainer", "—")),
            *(_number(version.get("metrics", {}).get(name)) for name in metric_names),
            "yes",  # only blessed models are published
            f"{_number(version.get('latency_ms_p50'), 3)} / {_number(version.get('latency_ms_p99'), 3)}",
            _drift_cell(version),
            " · ".join(a for a in actions if a),
        ]
        css = " class='champion'" if version["champion"] else ""
        rows.append(f"<tr{css}>" + "".join(f"<td>{cell}</td>" for cell in cells) + "</tr>")
    body += [
        "<h2>Versions</h2>",
        "<table aria-label='versions'><tr>"
        + "".join(f"<th>{_escape(h)}</th>" for h in head)
        + "</tr>"
        + "".join(rows)
        + "</table>",
        "<h2>Champion history</h2>",
    ]
    events = [
        "<tr>"
        f"<td>{_escape(e.get('at'))}</td><td>{_escape(e.get('previous') or '(none)')} → {_escape(e.get('version'))}"
        f"</td><td>{_escape(e.get('by'))}</td><td>{_escape(e.get('reason'))}</td></tr>"
        for e in reversed(view["history"])
    ]
    body.append(
        "<table aria-label='champion history'><tr><th>when (UTC)</th><th>change</th><th>by</th><th>reason</th></tr>"
        + "".join(events)
        + "</table>"
        if events
        else "<p class='muted'>No champion change recorded.</p>"
    )
    return _page(f"kest model {model}", body)


def confirm_html(view: dict[str, Any], version: dict[str, Any], action: str, back: str, error: str = "") -> str:
    """The confirmation before a champion change: what changes, a reason (required), a button; posts to `action`."""
    current = view["champion"] or "none"
    metrics = ", ".join(f"{k} {_number(v)}" for k, v in sorted(version.get("metrics", {}).items()) if "/" not in k)
    body = [
        f"<h1>Make {_escape(version['version'])} champion of {_escape(view['model'])}?</h1>",
        f"<p class='error'>{_escape(error)}</p>" if error else "",
        f"<p>The champion is now <strong>{_escape(current)}</strong>; it becomes <strong>"
        f"{_escape(version['version'])}</strong> ({_escape(metrics)}). Serving and the Asset's consumers follow "
        "the champion. This runs the <code>kest_promote</code> DAG as you, and is kept in the champion history.</p>",
        f"<form method='post' action='{_escape(action)}'>"
        "<p><label for='reason'>Reason</label><br><input id='reason' name='reason' size='60' required></p>"
        f"<p><button type='submit'>Make {_escape(version['version'])} champion</button> {_link(back, 'cancel')}</p>"
        "</form>",
    ]
    return _page(f"promote {version['version']}", body)

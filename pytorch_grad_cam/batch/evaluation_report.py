"""An evaluation's outputs: ``evaluation.json`` and ``report.html`` (leaderboard, classes, curves, worst).

The report is one self-contained page: plots are SVG written here, the worst images' maps PNGs
inlined as data URLs (encoded with OpenCV), every name escaped.
"""

from __future__ import annotations

import base64
import html
import json
import math
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from pytorch_grad_cam.batch.files import write_text
from pytorch_grad_cam.metrics.audit import METRICS, format_leaderboard, leaderboard, mean_interval
from pytorch_grad_cam.metrics.baselines import BASELINES

#: line colours of the plots, in turn
COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#7f7f7f", "#17becf")
#: the metric the worst images, the per-class table and the interval plot use, the first present
HEADLINE = ("energy_pointing_game", "relevance_mass", "randomisation_spearman", "random_logit_ssim")


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def _summary(records: Sequence[dict], class_names: Sequence[str] | None) -> dict:
    ok = [r for r in records if r.get("status") == "ok"]
    per_image: dict[str, dict[str, list[float]]] = {}
    by_class: dict[str, dict[str, dict[str, list[float]]]] = {}
    curves: dict[str, list[list[float]]] = {}
    for record in ok:
        label = _class_label(record.get("class"), class_names)
        for name, scores in record["scores"].items():
            for metric, value in scores.items():
                value = math.nan if value is None else value
                per_image.setdefault(name, {}).setdefault(metric, []).append(value)
                by_class.setdefault(label, {}).setdefault(name, {}).setdefault(metric, []).append(value)
        for name, curve in record.get("curves", {}).items():
            curves.setdefault(name, []).append([math.nan if v is None else v for v in curve])
    table = leaderboard(per_image)
    return {
        "table": table,
        "leaderboard": {
            name: {
                metric: {
                    "mean": _json_number(row.mean),
                    "low": _json_number(row.low),
                    "high": _json_number(row.high),
                    "count": row.count,
                    "beats_baselines": row.beats_baselines,
                }
                for metric, row in rows.items()
            }
            for name, rows in table.items()
        },
        "per_class": {
            label: {
                name: {metric: _json_number(mean_interval(values)[0]) for metric, values in metrics.items()}
                for name, metrics in explainers.items()
            }
            for label, explainers in sorted(by_class.items())
        },
        "curves": {
            "layers": ok[0].get("curve_layers", []) if ok else [],
            **{
                name: [_json_number(mean_interval(step)[0]) for step in zip(*rows)]
                for name, rows in curves.items()
            },
        },
    }


def _class_label(index: Any, class_names: Sequence[str] | None) -> str:
    if isinstance(index, int) and class_names is not None and 0 <= index < len(class_names):
        return f"{index} {class_names[index]}"
    return str(index)


def _json_number(value: float) -> float | None:
    return round(value, 6) if math.isfinite(value) else None


def write_evaluation(
    output_dir: Path,
    records: Sequence[dict],
    settings: dict,
    *,
    class_names: Sequence[str] | None,
    html: bool,
    worst: int,
    render: Callable[[str, str, int], np.ndarray | None],
) -> tuple[str, Path | None]:
    """Write ``evaluation.json`` (and ``report.html``); returns the markdown leaderboard and the page."""
    summary = _summary(records, class_names)
    images = [
        {
            key: record.get(key)
            for key in ("name", "image", "status", "error", "class", "scores")
            if key in record
        }
        for record in records
    ]
    document = {
        "settings": settings,
        "leaderboard": summary["leaderboard"],
        "per_class": summary["per_class"],
        "curves": summary["curves"],
        "images": images,
    }
    write_text(output_dir / "evaluation.json", json.dumps(document, indent=1) + "\n")
    text = format_leaderboard(summary["table"])
    if not html:
        return text, None
    page = output_dir / "report.html"
    write_text(page, _page(summary, records, settings, worst=worst, render=render))
    return text, page


def _headline(table: dict) -> str | None:
    present = {metric for rows in table.values() for metric in rows}
    return next((metric for metric in HEADLINE if metric in present), None)


def _cell(row: Any) -> str:
    if row is None or not math.isfinite(row.mean):
        return "<td>–</td>"
    mark = ' class="below"' if row.beats_baselines is False else ""
    half = (row.high - row.low) / 2
    return f"<td{mark}>{row.mean:.3f} <small>± {half:.3f}</small></td>"


def _leaderboard_html(table: dict) -> str:
    metrics = [m for m in METRICS if any(m in rows for rows in table.values())]
    head = "".join(f"<th>{html.escape(m)} {'↑' if METRICS[m] else '↓'}</th>" for m in metrics)
    rows = []
    for name, cells in table.items():
        label = html.escape(name) + (" <small>(baseline)</small>" if name in BASELINES else "")
        rows.append(f"<tr><th>{label}</th>" + "".join(_cell(cells.get(m)) for m in metrics) + "</tr>")
    return f"<table><tr><th>explainer</th>{head}</tr>{''.join(rows)}</table>"


def svg_intervals(table: dict, metric: str) -> str:
    """Each explainer's mean of ``metric`` as a dot with its 95% interval as a bar (horizontal)."""
    rows = [
        (name, rows[metric])
        for name, rows in table.items()
        if metric in rows and math.isfinite(rows[metric].mean)
    ]
    if not rows:
        return ""
    low = min(0.0, *(row.low for _, row in rows))
    high = max(1.0, *(row.high for _, row in rows))
    width, left, line = 560, 150, 22
    height = line * len(rows) + 30

    def x(value: float) -> float:
        return left + (value - low) / (high - low) * (width - left - 20)

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img">']
    for i, (name, row) in enumerate(rows):
        y = 15 + i * line
        colour = "#999" if name in BASELINES else COLOURS[i % len(COLOURS)]
        parts.append(
            f'<text x="{left - 6}" y="{y + 4}" text-anchor="end" font-size="12">{html.escape(name)}</text>'
        )
        parts.append(
            f'<line x1="{x(row.low):.1f}" x2="{x(row.high):.1f}" y1="{y}" y2="{y}" '
            f'stroke="{colour}" stroke-width="2"/>'
        )
        parts.append(f'<circle cx="{x(row.mean):.1f}" cy="{y}" r="4" fill="{colour}"/>')
    axis = height - 10
    parts.append(f'<line x1="{x(low):.1f}" x2="{x(high):.1f}" y1="{axis}" y2="{axis}" stroke="#000"/>')
    for tick in np.linspace(low, high, 5):
        parts.append(
            f'<text x="{x(tick):.1f}" y="{axis - 3}" font-size="10" text-anchor="middle">{tick:.2f}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def svg_curves(curves: dict) -> str:
    """Mean Spearman after each cascading randomisation step, one line per explainer."""
    layers = curves.get("layers") or []
    lines = {name: values for name, values in curves.items() if name != "layers" and values}
    if not layers or not lines:
        return ""
    width, height, left, bottom = 560, 260, 50, 60
    steps = len(layers)

    def point(step: int, value: float) -> str:
        px = left + (step + 0.5) / steps * (width - left - 130)
        py = 10 + (1 - (value + 1) / 2) * (height - bottom - 10)  # -1 .. 1
        return f"{px:.1f},{py:.1f}"

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img">']
    for value in (-1.0, 0.0, 1.0):
        y = point(0, value).split(",")[1]
        parts.append(f'<line x1="{left}" x2="{width - 130}" y1="{y}" y2="{y}" stroke="#ddd"/>')
        parts.append(f'<text x="{left - 4}" y="{y}" font-size="10" text-anchor="end">{value:.0f}</text>')
    for step, layer in enumerate(layers):
        x = point(step, -1).split(",")[0]
        parts.append(
            f'<text x="{x}" y="{height - bottom + 14}" font-size="10" text-anchor="end" '
            f'transform="rotate(-30 {x} {height - bottom + 14})">{html.escape(str(layer))}</text>'
        )
    for i, (name, values) in enumerate(lines.items()):
        colour = "#999" if name in BASELINES else COLOURS[i % len(COLOURS)]
        points = " ".join(point(s, v) for s, v in enumerate(values) if _finite(v))
        parts.append(f'<polyline points="{points}" fill="none" stroke="{colour}" stroke-width="2"/>')
        parts.append(
            f'<text x="{width - 125}" y="{20 + 14 * i}" font-size="11" fill="{colour}">'
            f"{html.escape(name)}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def png_data_url(rgb: np.ndarray) -> str:
    """An ``(H, W, 3)`` uint8 RGB picture as a ``data:image/png;base64`` URL."""
    import cv2

    ok, encoded = cv2.imencode(".png", np.ascontiguousarray(rgb[:, :, ::-1]))
    if not ok:
        raise ValueError("the picture could not be encoded as PNG")
    return "data:image/png;base64," + base64.b64encode(encoded.tobytes()).decode("ascii")


def _worst_html(records: Sequence[dict], table: dict, metric: str, worst: int, render: Callable) -> str:
    if worst == 0:
        return ""
    higher = METRICS.get(metric, True)
    parts = []
    for name in table:
        if name in BASELINES:
            continue
        scored = [
            r for r in records if r.get("status") == "ok" and _finite(r["scores"].get(name, {}).get(metric))
        ]
        scored.sort(key=lambda r: r["scores"][name][metric], reverse=not higher)
        cells = []
        for record in scored[:worst]:
            picture = render(record["name"], name, int(record["class"]))
            image = (
                f'<img src="{png_data_url(picture)}" alt="{html.escape(record["name"])}">'
                if picture is not None
                else ""
            )
            value = record["scores"][name][metric]
            cells.append(
                f"<figure>{image}<figcaption>{html.escape(record['name'])}: {value:.3f}</figcaption></figure>"
            )
        parts.append(f'<h3>{html.escape(name)}</h3><div class="worst">{"".join(cells)}</div>')
    return "".join(parts)


def _page(summary: dict, records: Sequence[dict], settings: dict, *, worst: int, render: Callable) -> str:
    table = summary["table"]
    metric = _headline(table)
    classes = ""
    if metric is not None and summary["per_class"]:
        names = list(table)
        head = "".join(f"<th>{html.escape(n)}</th>" for n in names)
        rows = []
        for label, explainers in summary["per_class"].items():
            cells = "".join(
                f"<td>{explainers[n][metric]:.3f}</td>"
                if _finite(explainers.get(n, {}).get(metric))
                else "<td>–</td>"
                for n in names
            )
            rows.append(f"<tr><th>{html.escape(label)}</th>{cells}</tr>")
        classes = (
            f"<h2>Per class: {html.escape(metric)}</h2>"
            f"<table><tr><th>class</th>{head}</tr>{''.join(rows)}</table>"
        )
    ok = sum(1 for r in records if r.get("status") == "ok")
    failed = [r for r in records if r.get("status") != "ok"]
    curves = svg_curves(summary["curves"])
    return (
        '<!DOCTYPE html><html><head><meta charset="utf-8"><title>CAM evaluation</title><style>'
        "body{font-family:sans-serif;margin:20px}table{border-collapse:collapse}td,th{border:1px solid #ccc;"
        "padding:3px 6px;text-align:right}td.below{background:#fdd}.worst{display:flex;flex-wrap:wrap}"
        "figure{margin:4px}img{width:160px}</style></head><body>"
        f"<h1>CAM evaluation</h1><p>{ok} images scored, {len(failed)} failed. Means with 95% intervals over "
        "the images; a red cell: the method does not beat the best baseline on that metric. "
        "↑ higher is better, ↓ lower is better.</p>"
        f"<h2>Leaderboard</h2>{_leaderboard_html(table)}"
        + (f"<h2>{html.escape(metric)}</h2>{svg_intervals(table, metric)}" if metric else "")
        + classes
        + (
            f"<h2>Sanity: cascading randomisation</h2><p>Mean Spearman of the map after randomising the "
            f"model from the top down to each layer group.</p>{curves}"
            if curves
            else ""
        )
        + (
            f"<h2>Worst images by {html.escape(metric)}</h2>"
            f"{_worst_html(records, table, metric, worst, render)}"
            if metric
            else ""
        )
        + f"<h2>Settings</h2><pre>{html.escape(json.dumps(settings, indent=1))}</pre></body></html>\n"
    )

"""The static gallery of a batch run: ``index.html``, ``index-2.html``, ... in the output folder.

Each page is one self-contained HTML file (inline CSS, no script, no network): a grid of cells,
one per image in manifest order, with the image's thumbnail, its CAM overlay thumbnail, the
predicted class and its probability; a cell for a bad file gives the reason. Links are relative,
so the folder can be moved or copied and opened offline in any browser.
"""

from __future__ import annotations

import html
import math
from pathlib import Path
from typing import Sequence
from urllib.parse import quote

from pytorch_grad_cam.batch.files import write_text

_STYLE = """
body { font-family: sans-serif; margin: 1em; background: #fafafa; color: #222; }
h1 { font-size: 1.3em; }
nav { margin: 1em 0; }
nav a, nav span { margin-right: 0.4em; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(340px, 1fr)); gap: 12px; }
figure { margin: 0; padding: 6px; background: #fff; border: 1px solid #ddd; }
figure img { width: 160px; height: auto; vertical-align: top; }
figcaption { font-size: 0.85em; margin-top: 4px; word-break: break-all; }
.bad { background: #fff0f0; border-color: #e99; }
.prob { color: #555; }
"""


def page_name(page: int) -> str:
    """The file of page ``page`` (1-based): ``index.html``, then ``index-2.html``, ..."""
    return "index.html" if page == 1 else f"index-{page}.html"


def _href(path: str) -> str:
    """A relative link to ``path``: percent-encoded (a name that is not UTF-8 links its own bytes)."""
    return html.escape(quote(path, errors="surrogateescape"), quote=True)


def _text(value: object) -> str:
    """``value`` as HTML text: escaped, and bytes that are not UTF-8 (a file name's) shown as U+FFFD."""
    shown = str(value).encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return html.escape(shown, quote=True)


def _cell(record: dict) -> str:
    name = _text(record.get("name", ""))
    if record.get("status") != "ok":
        reason = _text(record.get("error", "unknown error"))
        return f'<figure class="bad"><figcaption><b>{name}</b><br>skipped: {reason}</figcaption></figure>'
    parts = []
    thumbnail, overlay_thumbnail = record.get("thumbnail"), record.get("overlay_thumbnail")
    if thumbnail:
        alt = _text(record.get("name", ""))
        parts.append(f'<img src="{_href(thumbnail)}" alt="{alt}">')
    if overlay_thumbnail:
        image = f'<img src="{_href(overlay_thumbnail)}" alt="CAM">'
        overlay = record.get("overlay")
        parts.append(f'<a href="{_href(overlay)}">{image}</a>' if overlay else image)
    label = record.get("predicted_name") or record.get("predicted")
    caption = [f"<b>{name}</b>"]
    if label is not None:
        probability = record.get("probability")
        shown = f" <span class=prob>({probability:.1%})</span>" if isinstance(probability, float) else ""
        caption.append(f"{_text(label)}{shown}")
    target = record.get("target")
    if target is not None and target != record.get("predicted"):
        caption.append(f"explains class {_text(record.get('target_name') or target)}")
    caption.append(f'<a href="{_href(record["cam"])}">CAM (.npy)</a>')
    return f"<figure>{''.join(parts)}<figcaption>{'<br>'.join(caption)}</figcaption></figure>"


def _nav(page: int, pages: int) -> str:
    if pages == 1:
        return ""
    links = []
    if page > 1:
        links.append(f'<a href="{page_name(page - 1)}" rel="prev">&laquo; previous</a>')
    for other in range(1, pages + 1):
        links.append(
            f"<span>{other}</span>" if other == page else f'<a href="{page_name(other)}">{other}</a>'
        )
    if page < pages:
        links.append(f'<a href="{page_name(page + 1)}" rel="next">next &raquo;</a>')
    return f"<nav>{' '.join(links)}</nav>"


def write_gallery(
    output_dir: str | Path, records: Sequence[dict], *, per_page: int = 100, title: str = "CAMs"
) -> list[Path]:
    """Write the gallery pages of ``records`` (manifest records, paths relative to ``output_dir``).

    Args:
        output_dir: the run's output folder; the pages are written there.
        records: one per image, in the order to show them.
        per_page: cells per page.
        title: the pages' heading.

    Returns:
        The pages written, first to last (at least ``index.html``, even for no records). Pages
        left from an earlier, longer run are removed.
    """
    if per_page < 1:
        raise ValueError(f"per_page must be a positive int; got {per_page!r}")
    output_dir = Path(output_dir)
    pages = max(1, math.ceil(len(records) / per_page))
    bad = sum(1 for record in records if record.get("status") != "ok")
    written = []
    for page in range(1, pages + 1):
        chunk = records[(page - 1) * per_page : page * per_page]
        first = (page - 1) * per_page + 1 if chunk else 0
        heading = _text(title)
        summary = (
            f"{len(records)} images ({bad} bad files), page {page} of {pages}: "
            f"images {first}-{first + len(chunk) - 1 if chunk else 0}"
        )
        nav = _nav(page, pages)
        cells = "\n".join(_cell(record) for record in chunk)
        text = (
            "<!DOCTYPE html>\n"
            '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f"<title>{heading} - page {page}</title>\n<style>{_STYLE}</style>\n</head>\n<body>\n"
            f"<h1>{heading}</h1>\n<p>{summary}</p>\n{nav}\n"
            f'<div class="grid">\n{cells}\n</div>\n{nav}\n</body>\n</html>\n'
        )
        path = output_dir / page_name(page)
        write_text(path, text)
        written.append(path)
    stale = pages + 1
    while (output_dir / page_name(stale)).exists():
        (output_dir / page_name(stale)).unlink()
        stale += 1
    return written

"""One self-contained HTML page from the Markdown the reports write (figures embedded)."""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

__all__ = ["markdown_to_html"]

STYLE = """body{font-family:system-ui,sans-serif;max-width:60em;margin:2em auto;padding:0 1em;
line-height:1.45;color:#222}table{border-collapse:collapse;margin:1em 0}
td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left}th{background:#f3f3f3}
img{max-width:100%;height:auto}code{background:#f3f3f3;padding:0 .2em}"""

IMAGE = re.compile(r"^!\[(?P<alt>[^\]]*)\]\((?P<src>[^)]+)\)$")


def _inline(text: str) -> str:
    """Escape ``text`` and turn ``**bold**``, ``*italic*`` and ```code``` into tags."""
    text = html.escape(text, quote=False)
    text = re.sub(r"`([^`]+)`", r"<code>\1</code>", text)
    text = re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", text)
    return re.sub(r"(?<![\w*])\*([^*\s][^*]*)\*(?![\w*])", r"<em>\1</em>", text)


def _image(alt: str, src: str, base: Path) -> str:
    """An ``<img>`` with the PNG at ``base / src`` embedded as base64 (a note if missing)."""
    path = base / src
    if not path.exists():
        return f"<p><em>(figure {html.escape(src)} missing)</em></p>"
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _table(rows: list[str]) -> str:
    """A Markdown pipe table (header, rule, rows) as an HTML table."""
    cells = [[c.strip() for c in row.strip().strip("|").split("|")] for row in rows]
    head = "".join(f"<th>{_inline(c)}</th>" for c in cells[0])
    body = "".join(
        "<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in row) + "</tr>" for row in cells[2:]
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _blocks(markdown: str) -> list[list[str]]:
    """The Markdown's blocks: runs of non-blank lines."""
    blocks, current = [], []
    for line in markdown.splitlines():
        if line.strip():
            current.append(line)
        elif current:
            blocks.append(current)
            current = []
    return blocks + ([current] if current else [])


def _block(lines: list[str], base: Path) -> str:
    first = lines[0]
    if first.startswith("#"):
        level = len(first) - len(first.lstrip("#"))
        return f"<h{level}>{_inline(first[level:].strip())}</h{level}>"
    if first.startswith("|"):
        return _table(lines)
    if len(lines) == 1 and (match := IMAGE.match(first.strip())):
        return _image(match["alt"], match["src"], base)
    return f"<p>{_inline(' '.join(lines))}</p>"


def markdown_to_html(markdown: str, base: str | Path, *, title: str) -> str:
    """A complete HTML page of the report Markdown (headings, paragraphs, pipe tables,
    ``**bold**``, ``*italic*``, ```code```, one image per paragraph), with every image read
    from ``base`` and embedded, so the page reads offline on its own."""
    body = "\n".join(_block(lines, Path(base)) for lines in _blocks(markdown))
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head>\n"
        f"<body>\n{body}\n</body></html>\n"
    )

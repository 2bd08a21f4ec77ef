"""The HTML of the report: one self-contained page (pictures embedded as PNG data, styles
inline, no script, nothing fetched), readable in any browser and offline."""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass
from typing import Any, Iterable

__all__ = ["Section", "image_tag", "table", "paragraph", "page", "escape"]

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0 auto; max-width: 1100px;
       padding: 0 1.2em 3em; color: #1d1d1f; line-height: 1.45; }
h1 { font-size: 1.5em; margin: 1em 0 0.2em; } h2 { font-size: 1.2em; margin-top: 2em; border-bottom: 1px solid #ddd; }
h3 { font-size: 1em; margin: 1.2em 0 0.4em; }
nav { font-size: 0.9em; margin: 0.5em 0 1em; } nav a { margin-right: 0.8em; }
table { border-collapse: collapse; font-size: 0.86em; margin: 0.5em 0; }
th, td { border: 1px solid #d0d0d0; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
th { background: #f3f3f5; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
img { max-width: 100%; height: auto; display: block; margin: 0.4em 0; }
.meta { color: #555; font-size: 0.88em; }
.guide { color: #333; font-size: 0.9em; background: #f6f8fa; border-left: 3px solid #8aa; padding: 0.4em 0.8em; }
.warnings { background: #fff4e5; border: 1px solid #f0b35b; padding: 0.5em 1em; }
.warnings li { margin: 0.2em 0; } .ok { color: #2b7a2b; }
code { font-size: 0.9em; background: #f3f3f5; padding: 0 0.2em; }
"""


def escape(value: Any) -> str:
    """Text made safe to place in HTML."""
    return html.escape(str(value), quote=True)


@dataclass
class Section:
    """One titled part of the page; ``anchor`` is its id (linked from the page's navigation)
    and ``body`` its HTML."""

    anchor: str
    title: str
    body: str


def image_tag(png: bytes, alt: str) -> str:
    """An ``<img>`` that carries its PNG bytes inline (a ``data:`` URL)."""
    data = base64.b64encode(png).decode("ascii")
    return f'<img alt="{escape(alt)}" src="data:image/png;base64,{data}">'


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f'<td class="num">{value:.4g}</td>'
    if isinstance(value, int) and not isinstance(value, bool):
        return f'<td class="num">{value}</td>'
    return f"<td>{escape(value)}</td>"


def table(header: Iterable[str], rows: Iterable[Iterable[Any]]) -> str:
    """A table; floats are shown with 4 significant digits, other values as text."""
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(_cell(v) for v in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def paragraph(text: str, css_class: str | None = None) -> str:
    cls = f' class="{css_class}"' if css_class else ""
    return f"<p{cls}>{escape(text)}</p>"


def page(title: str, meta: str, warnings: list[str], sections: list[Section]) -> str:
    """The whole document: title, a line of metadata, the warnings (or a line saying there were
    none), a navigation bar and the sections."""
    if warnings:
        items = "".join(f"<li>{escape(w)}</li>" for w in warnings)
        warn = f'<section id="warnings" class="warnings"><strong>Warnings</strong><ul>{items}</ul></section>'
    else:
        warn = '<section id="warnings"><p class="ok">No warnings were raised during the fit.</p></section>'
    nav = "".join(f'<a href="#{s.anchor}">{escape(s.title)}</a>' for s in sections)
    body = "".join(f'<section id="{s.anchor}"><h2>{escape(s.title)}</h2>{s.body}</section>' for s in sections)
    return (
        "<!DOCTYPE html>\n"
        f'<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<style>{STYLE}</style></head><body>"
        f'<h1>{escape(title)}</h1><p class="meta">{escape(meta)}</p>{warn}<nav>{nav}</nav>{body}'
        "</body></html>\n"
    )

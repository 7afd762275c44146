"""HTML building blocks of the lab report: one self-contained page.

Images are embedded as base64 ``data:`` URIs so ``index.html`` can be moved,
mailed or opened offline on its own. Every helper returns an HTML fragment
(a string); text is escaped, fragments are not.
"""

from __future__ import annotations

import base64
import html
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

STYLE = """
:root { --ink:#1f2328; --muted:#59636e; --line:#d0d7de; --accent:#0b5cad; --bg:#f6f8fa; }
* { box-sizing: border-box; }
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--ink);
       margin: 0; background: #fff; }
main { max-width: 1180px; margin: 0 auto; padding: 24px 28px 64px; }
h1 { font-size: 26px; margin: 8px 0 4px; }
h2 { font-size: 20px; margin: 36px 0 8px; padding-bottom: 4px; border-bottom: 2px solid var(--line); }
.sub { color: var(--muted); margin: 0 0 16px; }
section.manip { border: 1px solid var(--line); border-radius: 8px; padding: 14px 18px 10px;
                margin: 14px 0; background: #fff; }
.ref { display: inline-block; font-size: 12px; font-weight: 600; color: #fff; background: var(--accent);
       border-radius: 10px; padding: 1px 9px; margin-right: 8px; vertical-align: 2px; }
.question { font-weight: 600; font-size: 16px; }
.fr { display: block; color: var(--muted); font-size: 12.5px; font-style: italic; margin: 2px 0 8px; }
.answer { margin: 6px 0; }
.big { font-size: 17px; font-weight: 600; }
figure { margin: 10px 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { color: var(--muted); font-size: 13px; }
table { border-collapse: collapse; margin: 8px 0; font-size: 13.5px; }
th, td { border: 1px solid var(--line); padding: 3px 8px; text-align: right; }
th { background: var(--bg); }
td.l, th.l { text-align: left; }
pre { background: var(--bg); border: 1px solid var(--line); border-radius: 6px; padding: 8px 10px;
      overflow-x: auto; font-size: 12.5px; line-height: 1.35; }
code { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 13px; }
.note { color: var(--muted); font-size: 13px; }
.proto { background: var(--bg); border: 1px solid var(--line); border-radius: 8px; padding: 10px 16px; }
.proto li { margin: 2px 0; }
nav.toc { columns: 2; font-size: 13.5px; margin: 8px 0 0; }
nav.toc a { color: var(--accent); text-decoration: none; }
.missing { color: #9a6700; }
"""


def esc(text: Any) -> str:
    return html.escape(str(text), quote=True)


def p(text: str, cls: str = "answer") -> str:
    """A paragraph of plain text (escaped)."""
    return f'<p class="{cls}">{esc(text)}</p>'


def raw_p(fragment: str, cls: str = "answer") -> str:
    """A paragraph of trusted HTML."""
    return f'<p class="{cls}">{fragment}</p>'


def pre(text: str) -> str:
    return f"<pre>{esc(text)}</pre>"


def code(text: str) -> str:
    return f"<code>{esc(text)}</code>"


def image(path: str | os.PathLike | None, caption: str = "", alt: str = "") -> str:
    """An embedded PNG (base64 data URI) with a caption; a notice when there is no image."""
    if path is None or not Path(path).is_file():
        return p(f"(figure not available: {caption or alt})", "missing")
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    cap = f"<figcaption>{esc(caption)}</figcaption>" if caption else ""
    return f'<figure><img alt="{esc(alt or caption)}" src="data:image/png;base64,{data}">{cap}</figure>'


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], left: Sequence[int] = (0,)) -> str:
    """A table; columns listed in ``left`` are left-aligned, floats are shown as given."""
    head = "".join(f'<th class="{"l" if i in left else ""}">{esc(h)}</th>' for i, h in enumerate(headers))
    body = []
    for row in rows:
        cells = "".join(f'<td class="{"l" if i in left else ""}">{esc(v)}</td>' for i, v in enumerate(row))
        body.append(f"<tr>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def kv_table(pairs: Mapping[str, Any]) -> str:
    return table(["quantity", "value"], [[k, v] for k, v in pairs.items()], left=(0, 1))


@dataclass
class Section:
    """One manipulation of the lab: reference, question (English and French), answer fragments."""

    anchor: str
    ref: str
    question: str
    question_fr: str = ""
    body: list[str] = field(default_factory=list)

    def render(self) -> str:
        fr = f'<span class="fr">{esc(self.question_fr)}</span>' if self.question_fr else ""
        return (
            f'<section class="manip" id="{esc(self.anchor)}">'
            f'<div><span class="ref">{esc(self.ref)}</span><span class="question">{esc(self.question)}</span></div>'
            f"{fr}{''.join(self.body)}</section>"
        )


@dataclass
class Chapter:
    """A numbered part of the lab holding its manipulations in order."""

    title: str
    sections: list[Section] = field(default_factory=list)

    def render(self) -> str:
        return f"<h2>{esc(self.title)}</h2>" + "".join(s.render() for s in self.sections)


def page(title: str, subtitle: str, preamble: str, chapters: Sequence[Chapter]) -> str:
    """The whole document."""
    toc = "".join(
        f'<li><a href="#{esc(s.anchor)}">{esc(s.ref)}: {esc(s.question)}</a></li>'
        for c in chapters
        for s in c.sections
    )
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{STYLE}</style></head><body><main>"
        f"<h1>{esc(title)}</h1><p class=\"sub\">{esc(subtitle)}</p>{preamble}"
        f'<nav class="toc"><ol>{toc}</ol></nav>'
        f"{''.join(c.render() for c in chapters)}"
        "</main></body></html>\n"
    )

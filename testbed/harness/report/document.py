"""The document: blocks (headings, text, bullets, tables, images, links) rendered to
Markdown and to one self-contained HTML page, and both written beside the figures."""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Union

from testbed.harness.report.common import ReportPaths, fmt


@dataclass(frozen=True)
class Heading:
    text: str
    level: int = 2


@dataclass(frozen=True)
class Text:
    text: str


@dataclass(frozen=True)
class Bullets:
    items: list[str]


@dataclass(frozen=True)
class Table:
    columns: list[str]
    rows: list[list[str]]


@dataclass(frozen=True)
class Image:
    title: str
    src: str


@dataclass(frozen=True)
class Links:
    """(text, Markdown target, HTML target) per item."""

    items: list[tuple[str, str, str]]


Block = Union[Heading, Text, Bullets, Table, Image, Links]


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _md_table(table: Table) -> str:
    lines = ["| " + " | ".join(_md_cell(c) for c in table.columns) + " |",
             "|" + "|".join("---" for _ in table.columns) + "|"]
    lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in table.rows]
    return "\n".join(lines)


def _md_block(block: Block) -> str:
    if isinstance(block, Heading):
        return "#" * block.level + " " + block.text
    if isinstance(block, Text):
        return block.text
    if isinstance(block, Bullets):
        return "\n".join(f"- {item}" for item in block.items)
    if isinstance(block, Table):
        return _md_table(block)
    if isinstance(block, Image):
        return f"![{block.title}]({block.src})"
    return "\n".join(f"- [{text}]({md})" for text, md, _ in block.items)


def to_markdown(blocks: Sequence[Block]) -> str:
    """The blocks as GitHub Markdown."""
    return "\n\n".join(_md_block(b) for b in blocks) + "\n"


_CSS = """body{font-family:system-ui,sans-serif;max-width:72rem;margin:2rem auto;padding:0 1rem;
color:#222}table{border-collapse:collapse;margin:.5rem 0 1.5rem}
th,td{border:1px solid #ccc;padding:.2rem .6rem;text-align:left}th{background:#f2f2f2}
img{max-width:100%}figure{margin:1rem 0}figcaption{color:#555;font-size:.9rem}
p.note{color:#555}"""


def _esc(text: str) -> str:
    return html.escape(text, quote=True)


def _html_table(table: Table) -> str:
    head = "".join(f"<th>{_esc(c)}</th>" for c in table.columns)
    body = "\n".join("<tr>" + "".join(f"<td>{_esc(c)}</td>" for c in row) + "</tr>"
                     for row in table.rows)
    return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody>\n</table>"


def _html_block(block: Block) -> str:
    if isinstance(block, Heading):
        return f"<h{block.level}>{_esc(block.text)}</h{block.level}>"
    if isinstance(block, Text):
        return f'<p class="note">{_esc(block.text)}</p>'
    if isinstance(block, Bullets):
        return "<ul>" + "".join(f"<li>{_esc(i)}</li>" for i in block.items) + "</ul>"
    if isinstance(block, Table):
        return _html_table(block)
    if isinstance(block, Image):
        return (f'<figure><img src="{_esc(block.src)}" alt="{_esc(block.title)}">'
                f"<figcaption>{_esc(block.title)}</figcaption></figure>")
    return "<ul>" + "".join(f'<li><a href="{_esc(h)}">{_esc(t)}</a></li>'
                            for t, _, h in block.items) + "</ul>"


def to_html(title: str, blocks: Sequence[Block]) -> str:
    """The blocks as one self-contained HTML page (images by relative path)."""
    parts = ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
             f"<title>{_esc(title)}</title>", f"<style>{_CSS}</style>", "</head>", "<body>"]
    parts += [_html_block(b) for b in blocks]
    parts += ["</body>", "</html>"]
    return "\n".join(parts) + "\n"


def _kv_table(rows: Sequence[tuple[str, object]], head: tuple[str, str]) -> Table:
    return Table(list(head), [[k, fmt(v)] for k, v in rows])


def _write(path: Path, title: str, blocks: list[Block], figures: list[Path]) -> ReportPaths:
    md, page = path / "report.md", path / "report.html"
    md.write_text(to_markdown(blocks), encoding="utf-8")
    page.write_text(to_html(title, blocks), encoding="utf-8")
    return ReportPaths(md, page, figures)


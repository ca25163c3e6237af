"""Typesetting for the invoice PDFs (reportlab): embedded Unicode fonts shipped with the function, text
that falls back glyph by glyph from DejaVu Sans to Droid Sans Fallback (CJK, Hangul, kana), word
wrapping by measured width, pages with a header and "Page N of M" on every page.

The fonts live in `fonts/` beside this module (copied into every function artifact with `shared/`),
with their licences: DejaVu Sans (Bitstream Vera licence) and Droid Sans Fallback (Apache 2.0). Nothing
is read from the system's font directories. Right-to-left scripts are drawn in logical order (no bidi
shaping yet)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from reportlab.pdfgen.canvas import Canvas

FONTS_DIR = Path(__file__).parent / "fonts"
REGULAR, BOLD, FALLBACK = "LayersSans", "LayersSans-Bold", "LayersSansFallback"
_FILES = {REGULAR: "DejaVuSans.ttf", BOLD: "DejaVuSans-Bold.ttf", FALLBACK: "DroidSansFallback.ttf"}
MARGIN, TOP, BOTTOM = 40.0, 50.0, 60.0
LEADING = 12.0


@cache
def fonts() -> dict[str, Any]:
    """The embedded fonts, registered with reportlab once per process (about 60 ms, paid on first render)."""
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.ttfonts import TTFont

    registered = {}
    for name, file in _FILES.items():
        font = TTFont(name, str(FONTS_DIR / file))
        pdfmetrics.registerFont(font)
        registered[name] = font
    return registered


def has_glyph(font_name: str, char: str) -> bool:
    return ord(char) in fonts()[font_name].face.charToGlyph


def missing_glyphs(text: str) -> set[str]:
    """The characters of `text` none of the embedded fonts can draw (they would print as boxes)."""
    return {ch for ch in text if ch.isprintable() and not has_glyph(REGULAR, ch) and not has_glyph(FALLBACK, ch)}


def runs(text: str, bold: bool = False) -> list[tuple[str, str]]:
    """`text` cut into (font, piece) runs: each character in the main font if it has it, else the fallback."""
    main = BOLD if bold else REGULAR
    out: list[tuple[str, str]] = []
    for ch in text:
        font = main if has_glyph(main, ch) or not has_glyph(FALLBACK, ch) else FALLBACK
        if out and out[-1][0] == font:
            out[-1] = (font, out[-1][1] + ch)
        else:
            out.append((font, ch))
    return out


def width(text: str, size: float, bold: bool = False) -> float:
    from reportlab.pdfbase.pdfmetrics import stringWidth

    return float(sum(stringWidth(piece, font, size) for font, piece in runs(text, bold)))


_TOKENS = re.compile(
    r"[\u2e80-\u9fff\uac00-\ud7af\uf900-\ufaff\uff00-\uffef]|\S+?(?=[\u2e80-\u9fff\uac00-\ud7af])|\S+|\s+"
)


def wrap(text: str, size: float, max_width: float, bold: bool = False) -> list[str]:
    """`text` in lines no wider than `max_width`: broken at spaces (and between CJK characters); a word
    wider than the line is broken where it must. Never cut: every character is on some line."""
    lines: list[str] = []
    current = ""
    for token in _TOKENS.findall(text):
        if width(current + token, size, bold) <= max_width:
            current += token
            continue
        if current.strip():
            lines.append(current.rstrip())
        current = token.lstrip()
        while width(current, size, bold) > max_width and len(current) > 1:
            cut = _fit(current, size, max_width, bold)
            lines.append(current[:cut])
            current = current[cut:]
    if current.strip() or not lines:
        lines.append(current.rstrip())
    return lines


def ellipsized(text: str, size: float, max_width: float, bold: bool = False) -> str:
    """`text`, or as much of it as fits in `max_width` with "…" after it (a one-line header)."""
    if width(text, size, bold) <= max_width:
        return text
    return text[: _fit(text, size, max_width - width("\u2026", size, bold), bold)].rstrip() + "\u2026"


def _fit(text: str, size: float, max_width: float, bold: bool) -> int:
    """How many leading characters of `text` fit in `max_width` (at least one)."""
    cut = 1
    while cut < len(text) and width(text[: cut + 1], size, bold) <= max_width:
        cut += 1
    return cut


def draw(pdf: Canvas, x: float, y: float, text: str, size: float, bold: bool = False, align: str = "left") -> None:
    """`text` at (x, y), left- or right-aligned at x, each run in the font that has its glyphs."""
    if align == "right":
        x -= width(text, size, bold)
    for font, piece in runs(text, bold):
        pdf.setFont(font, size)
        pdf.drawString(x, y, piece)
        x += pdf.stringWidth(piece, font, size)


@dataclass(frozen=True)
class Running:
    """What every page carries: the header's title line and the footer's left text."""

    title: str
    footer: str


class Pages:
    """A cursor down the document's pages. A new page repeats the running header (and what the caller
    asks, e.g. a table's column headings); `finish` numbers every page "Page N of M"."""

    def __init__(self, pdf: Canvas, size: tuple[float, float], running: Running) -> None:
        self.pdf = pdf
        self.width, self.height = size
        self.running = running
        self.y = self.height - TOP
        self.on_new_page: Callable[[], None] | None = None
        self._pages: list[dict[str, Any]] = []

    @property
    def right(self) -> float:
        return self.width - MARGIN

    def text(self, x: float, value: str, size: float = 8.5, bold: bool = False, align: str = "left") -> None:
        draw(self.pdf, x, self.y, value, size, bold, align)

    def down(self, step: float = LEADING) -> None:
        self.y -= step

    def need(self, height: float) -> None:
        """A new page unless `height` points still fit above the footer."""
        if self.y - height < BOTTOM:
            self.break_page()

    def break_page(self) -> None:
        self._end_page()
        self.y = self.height - TOP
        draw(self.pdf, MARGIN, self.y, ellipsized(self.running.title, 9, self.right - MARGIN, bold=True), 9, bold=True)
        self.down(8)
        self.rule()
        self.down(14)
        if self.on_new_page is not None:
            self.on_new_page()

    def rule(self, gray: float = 0.6) -> None:
        self.pdf.setStrokeGray(gray)
        self.pdf.setLineWidth(0.5)
        self.pdf.line(MARGIN, self.y, self.right, self.y)

    def _end_page(self) -> None:
        self._pages.append(dict(self.pdf.__dict__))  # reportlab's own recipe for "of M": pages kept, then drawn
        self.pdf._startPage()

    def finish(self) -> None:
        """Numbers and writes every page: the footer "<running footer> · Page N of M" on each."""
        self._pages.append(dict(self.pdf.__dict__))
        total = len(self._pages)
        for number, state in enumerate(self._pages, start=1):
            self.pdf.__dict__.update(state)
            draw(self.pdf, MARGIN, 30, self.running.footer, 7)
            draw(self.pdf, self.right, 30, f"Page {number} of {total}", 7, align="right")
            self.pdf.showPage()
        self.pdf.save()

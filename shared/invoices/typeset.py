"""Typesetting for the invoice PDFs (reportlab): embedded Unicode fonts shipped with the function, text
that falls back run by run to the first font that has its glyphs, complex scripts shaped (HarfBuzz, via
uharfbuzz and reportlab's shaped strings), right-to-left runs put in visual order (the Unicode
bidirectional algorithm, python-bidi), word wrapping by measured width, pages with a header and "Page N
of M" on every page.

The fonts live in `fonts/` beside this module (copied into every function artifact with `shared/`),
with their licences: DejaVu Sans (Bitstream Vera licence) for Latin, Greek, Cyrillic, Armenian,
Georgian, Lao, N'Ko and symbols; the Noto Sans faces (SIL OFL 1.1) of the Indic scripts, Sinhala, Thai,
Khmer, Myanmar, Ethiopic, Arabic, Hebrew and Thaana; Droid Sans Fallback (Apache 2.0) for CJK, Hangul and kana;
monochrome Noto Emoji (OFL). Nothing is read from the system's font directories. A Noto face is read
only when a text needs it (only DejaVu Sans and Droid Sans Fallback for most invoices).

A line is laid out in three steps: each character gets a face (`runs`: the first face that has it;
combining marks, joiners and variation selectors stay with the face of the character they follow);
text in a script face or the emoji face, or running right to left, is shaped as a run (conjuncts,
Arabic joining, Thai marks, emoji sequences), the rest is drawn as it is; the runs are then ordered for
display (bidi rule L2) and drawn left to right. A line that needed either is wrapped in a marked
content span whose ActualText is the line as written, so copying or extracting it gives the logical
text, not glyph codes in visual order. The faces without a bold weight (all but DejaVu Sans) are
emboldened by stroking their outlines."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from reportlab.pdfgen.canvas import Canvas

FONTS_DIR = Path(__file__).parent / "fonts"
REGULAR, BOLD, FALLBACK, EMOJI = "LayersSans", "LayersSans-Bold", "LayersSansFallback", "LayersEmoji"
MARGIN, TOP, BOTTOM = 40.0, 50.0, 60.0
LEADING = 12.0


@dataclass(frozen=True)
class Face:
    """A font file and the characters it is asked for: those of its blocks, or (no blocks) any it has."""

    name: str
    file: str
    blocks: tuple[tuple[int, int], ...] = ()

    def may_draw(self, ch: str) -> bool:
        return not self.blocks or any(low <= ord(ch) <= high for low, high in self.blocks)


def _noto(script: str, *blocks: tuple[int, int]) -> Face:
    return Face(f"LayersNoto{script}", f"NotoSans{script}-Regular.ttf", blocks)


SCRIPT_FACES = (  # the Unicode blocks of each script (DejaVu Sans has some Arabic and Hebrew: Noto's win)
    _noto("Devanagari", (0x0900, 0x097F), (0xA8E0, 0xA8FF), (0x1CD0, 0x1CFF)),
    _noto("Bengali", (0x0980, 0x09FF)),
    _noto("Gurmukhi", (0x0A00, 0x0A7F)),
    _noto("Gujarati", (0x0A80, 0x0AFF)),
    _noto("Oriya", (0x0B00, 0x0B7F)),
    _noto("Tamil", (0x0B80, 0x0BFF), (0x11FC0, 0x11FFF)),
    _noto("Telugu", (0x0C00, 0x0C7F)),
    _noto("Kannada", (0x0C80, 0x0CFF)),
    _noto("Malayalam", (0x0D00, 0x0D7F)),
    _noto("Sinhala", (0x0D80, 0x0DFF), (0x111E0, 0x111FF)),
    _noto("Thai", (0x0E00, 0x0E7F)),
    _noto("Khmer", (0x1780, 0x17FF), (0x19E0, 0x19FF)),
    _noto("Myanmar", (0x1000, 0x109F), (0xA9E0, 0xA9FF), (0xAA60, 0xAA7F)),
    _noto("Ethiopic", (0x1200, 0x139F), (0x2D80, 0x2DDF), (0xAB00, 0xAB2F)),
    _noto("Arabic", (0x0600, 0x06FF), (0x0750, 0x077F), (0x08A0, 0x08FF), (0xFB50, 0xFDFF), (0xFE70, 0xFEFF)),
    _noto("Hebrew", (0x0590, 0x05FF), (0xFB1D, 0xFB4F)),
    _noto("Thaana", (0x0780, 0x07BF)),
    Face(EMOJI, "NotoEmoji-Regular.ttf", ((0x1F000, 0x1FAFF),)),  # pictographs, before DejaVu's few
)
_FILES = {
    REGULAR: "DejaVuSans.ttf",
    BOLD: "DejaVuSans-Bold.ttf",
    FALLBACK: "DroidSansFallback.ttf",
    **{face.name: face.file for face in SCRIPT_FACES},
}
_LAST = (Face(FALLBACK, _FILES[FALLBACK]), Face(EMOJI, _FILES[EMOJI]))  # after the main face: CJK, symbols
_UNSHAPED = {REGULAR, BOLD, FALLBACK}  # drawn as they are when left to right (Latin, Greek, Cyrillic, CJK)
_RTL_CLASSES = {"R", "AL", "RLE", "RLO", "RLI", "FSI"}
# python-bidi's rules predate the isolates (Unicode 6.3): they are taken as the embeddings they refine.
_ISOLATES = str.maketrans({"\u2066": "\u202a", "\u2067": "\u202b", "\u2068": "\u202b", "\u2069": "\u202c"})


@cache
def font(name: str) -> Any:
    """A face, read and registered with reportlab on first use (DejaVu Sans about 20 ms, a Noto face less)."""
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.ttfonts import TTFont

    registered = TTFont(name, str(FONTS_DIR / _FILES[name]))
    pdfmetrics.registerFont(registered)
    return registered


def fonts() -> dict[str, Any]:
    """The faces every document uses, registered (the script and emoji faces are read when a text needs them)."""
    return {name: font(name) for name in (REGULAR, BOLD, FALLBACK)}


def has_glyph(font_name: str, char: str) -> bool:
    """Whether the face draws `char`. Never a private-use character: their meaning is private, and the
    shaper gives private codes of the fonts to glyphs that no character maps to (conjuncts, ligatures)."""
    return ord(char) in font(font_name).face.charToGlyph and unicodedata.category(char) != "Co"


def _ignorable(ch: str) -> bool:
    """Invisible by itself: joiners, direction marks, variation selectors, tags (shaping uses or hides them)."""
    return unicodedata.category(ch) == "Cf" or 0xFE00 <= ord(ch) <= 0xFE0F or 0xE0100 <= ord(ch) <= 0xE01EF


def _attaches(ch: str) -> bool:
    """Belongs with the character before it: a combining mark, a joiner, a variation selector, a skin tone."""
    return unicodedata.category(ch) in ("Mn", "Mc", "Me") or _ignorable(ch) or 0x1F3FB <= ord(ch) <= 0x1F3FF


def _faces(text: str, bold: bool) -> list[str]:
    """The face of each character: the one of the character before it for what attaches to it (when that
    face has it or it is invisible), the emoji face for a character asked to look like an emoji (followed
    by U+FE0F or a keycap), else the first face that has it; the main face if none has it."""
    out: list[str] = []
    for index, ch in enumerate(text):
        before = out[-1] if out else None
        if before is not None and _attaches(ch) and (_ignorable(ch) or has_glyph(before, ch)):
            out.append(before)
        elif text[index + 1 : index + 2] in ("\ufe0f", "\u20e3") and has_glyph(EMOJI, ch):
            out.append(EMOJI)
        else:
            out.append(_first_face(ch, bold) or before or (BOLD if bold else REGULAR))
    return out


@lru_cache(maxsize=8192)
def _first_face(ch: str, bold: bool) -> str | None:
    """The first face that draws `ch`: a script's, the main one, CJK, emoji (None: no face has it)."""
    order = (*SCRIPT_FACES, Face(BOLD if bold else REGULAR, ""), *_LAST)
    return next((face.name for face in order if face.may_draw(ch) and has_glyph(face.name, ch)), None)


def runs(text: str, bold: bool = False) -> list[tuple[str, str]]:
    """`text` cut into (font, piece) runs in logical order, each character in the face chosen for it."""
    out: list[tuple[str, str]] = []
    for ch, face in zip(text, _faces(text, bold), strict=True):
        if out and out[-1][0] == face:
            out[-1] = (face, out[-1][1] + ch)
        else:
            out.append((face, ch))
    return out


def missing_glyphs(text: str) -> set[str]:
    """The characters of `text` none of the embedded fonts can draw (they would print as boxes)."""
    return {
        ch
        for face, piece in runs(text)
        for ch in piece
        if ch.isprintable() and not _ignorable(ch) and not has_glyph(face, ch)
    }


# ------------------------------------------------------------------------------------ bidi and shaping
def _levels(text: str, ltr: bool) -> list[int]:
    """Each character's embedding level (Unicode bidi rules P2-P3, X1-X10, W, N and I, python-bidi): even
    is left to right. The paragraph's direction is that of its first strong character (left to right when
    it has none); `ltr`: a sentence of ours, left to right, whose right-to-left stretches are quoted."""
    if not any(unicodedata.bidirectional(ch) in _RTL_CLASSES for ch in text):
        return [0] * len(text)
    return _quoted(text) if ltr else _paragraph(text)


def _quoted(text: str) -> list[int]:
    """A left-to-right sentence quoting names: each stretch from a right-to-left letter to the last one
    before the next left-to-right letter is ordered as a paragraph of its own, as if isolated (HTML's
    <bdi>), so the sentence's own numbers and punctuation stay in its order ("وكالة: 600 included", not
    "600 :وكالة included" as the plain rules put a number after an Arabic word)."""
    levels = [0] * len(text)
    start = last = None
    for index, ch in enumerate([*text, "a"]):  # a last strong L closes the last stretch
        kind = unicodedata.bidirectional(ch)
        if kind in _RTL_CLASSES:
            start, last = index if start is None else start, index
        elif kind == "NSM" and last == index - 1:
            last = index  # a mark on the stretch's last letter
        elif kind == "L" and start is not None and last is not None:
            levels[start : last + 1] = [level or 1 for level in _paragraph(text[start : last + 1])]
            start = last = None
    return levels


def _paragraph(text: str) -> list[int]:
    from bidi import algorithm as uba

    text = "".join(
        ch if unicodedata.bidirectional(ch) else "\ufffd" for ch in text.translate(_ISOLATES)
    )  # unassigned: ON
    storage = uba.get_empty_storage()
    storage["base_level"] = uba.get_base_level(text)
    storage["base_dir"] = "LR"[storage["base_level"]]
    uba.get_embedding_levels(text, storage)
    for index, char in enumerate(storage["chars"]):
        char["index"] = index
    uba.explicit_embed_and_overrides(storage)
    uba.resolve_weak_types(storage)
    uba.resolve_neutral_types(storage, False)
    uba.resolve_implicit_levels(storage, False)
    resolved = {char["index"]: int(char["level"]) for char in storage["chars"]}
    levels: list[int] = []
    for index in range(len(text)):  # the embedding controls (removed by rule X9) go with what is before
        levels.append(resolved.get(index, levels[-1] if levels else storage["base_level"]))
    return levels


@dataclass(frozen=True)
class _Item:
    face: str
    text: str  # in logical order
    level: int


def _items(text: str, bold: bool, ltr: bool) -> list[_Item]:
    """`text` cut where the face or the embedding level changes."""
    items: list[_Item] = []
    for ch, face, level in zip(text, _faces(text, bold), _levels(text, ltr), strict=True):
        if items and (items[-1].face, items[-1].level) == (face, level):
            items[-1] = _Item(face, items[-1].text + ch, level)
        else:
            items.append(_Item(face, ch, level))
    return items


def _visual(items: list[_Item]) -> list[_Item]:
    """Rule L2: from the highest level down to the lowest odd one, every sequence of items at that level
    or above is reversed (the characters of a right-to-left item are put in order by shaping it)."""
    order = list(items)
    odd = [item.level for item in order if item.level % 2]
    for level in range(max((item.level for item in order), default=0), min(odd, default=1) - 1, -1):
        out: list[_Item] = []
        start = 0
        while start < len(order):
            end = start
            while end < len(order) and order[end].level >= level:
                end += 1
            out.extend(reversed(order[start:end]) if end > start else [order[start]])
            start = max(end, start + 1)
        order = out
    return order


@lru_cache(maxsize=4096)
def _shaped(face: str, text: str, rtl: bool) -> tuple[str, float]:
    """`text` shaped in `face` by HarfBuzz: reportlab's ShapedStr of its glyphs in visual order, with their
    positions, and its advance in thousandths of the size. A glyph no character maps to (a conjunct, a
    ligature, an emoji sequence) gets a private-use code in the font, as reportlab's own shaping does."""
    import uharfbuzz as hb
    from reportlab.pdfbase.ttfonts import ShapeData, ShapedStr

    ttf = font(face)
    hb_font = ttf.hbFont(1000)
    buffer = hb.Buffer()
    buffer.add_str(text)
    buffer.guess_segment_properties()
    buffer.direction = "rtl" if rtl else "ltr"
    buffer.cluster_level = hb.BufferClusterLevel.MONOTONE_CHARACTERS
    hb.shape(hb_font, buffer, {"kern": True, "liga": True})
    codes, data = [], []
    for info, pos in zip(buffer.glyph_infos, buffer.glyph_positions, strict=True):
        advance = ttf.pdfScale(pos.x_advance)
        known = ttf.face.glyphToChar.get(info.codepoint)
        code = known[0] if known else ttf.hbAddPrivate(hb_font.glyph_to_string(info.codepoint), info.codepoint, advance)
        codes.append(chr(code))
        offsets = (ttf.pdfScale(pos.y_advance), ttf.pdfScale(pos.x_offset), ttf.pdfScale(pos.y_offset))
        data.append(ShapeData(info.cluster, advance, *offsets, ttf.face.charWidths[code]))
    return ShapedStr("".join(codes), shapeData=data), float(sum(d.x_advance for d in data))


@dataclass(frozen=True)
class _Piece:
    face: str
    glyphs: str  # a str, or a ShapedStr
    advance: float  # thousandths of the size
    actual: str | None = None  # a shaped piece's characters, in the order a text extractor expects


@dataclass(frozen=True)
class _Line:
    pieces: tuple[_Piece, ...]  # in visual order, left to right

    @property
    def advance(self) -> float:
        return sum(piece.advance for piece in self.pieces)


def _piece(item: _Item) -> _Piece:
    rtl = item.level % 2 == 1
    if item.face not in _UNSHAPED or rtl or any(unicodedata.category(ch).startswith("M") for ch in item.text):
        glyphs, advance = _shaped(item.face, item.text, rtl)
        return _Piece(item.face, glyphs, advance, item.text[::-1] if rtl else item.text)
    text = "".join(ch for ch in item.text if not _ignorable(ch) or has_glyph(item.face, ch))  # no box for a ZWJ
    return _Piece(item.face, text, float(font(item.face).stringWidth(text, 1000)))


@lru_cache(maxsize=2048)
def layout(text: str, bold: bool = False, ltr: bool = False) -> _Line:
    """One line of `text`: its pieces in visual order, shaped where the script or the direction needs it."""
    if _plain(text):
        return _Line((_piece(_Item(BOLD if bold else REGULAR, text, 0)),))
    return _Line(tuple(_piece(item) for item in _visual(_items(as_drawn(text), bold, ltr))))


def _plain(text: str) -> bool:
    return text.isascii() and text.isprintable()


_MARKS_KEPT = 4
_OVERRIDES = "\u202d\u202e"  # LEFT-TO-RIGHT and RIGHT-TO-LEFT OVERRIDE: text shown reversed ("exe.pdf")


def as_drawn(text: str) -> str:
    """`text` as drawn: a control character or a line or paragraph separator is a space, a private-use or
    lone surrogate code is U+FFFD, a base keeps its first four combining marks (more would stack above
    and below the line, off the page; ordinary text has fewer), and the bidi overrides are dropped (they
    show characters in an order the text does not have: "Invoice\u202eexe.pdf" would read
    "Invoicefdp.exe"; the direction of each script is found without them)."""
    out: list[str] = []
    marks = 0
    for ch in text:
        kind = unicodedata.category(ch)
        marks = marks + 1 if kind in ("Mn", "Me") else 0
        if marks <= _MARKS_KEPT and ch not in _OVERRIDES:
            out.append(" " if kind in ("Cc", "Zl", "Zp") else "\ufffd" if kind in ("Co", "Cs") else ch)
    return "".join(out)


def width(text: str, size: float, bold: bool = False) -> float:
    if _plain(text):  # the long texts (a 10,000-character description) are measured often while wrapped
        return float(font(BOLD if bold else REGULAR).stringWidth(text, size))
    return layout(text, bold).advance * size / 1000


def draw(
    pdf: Canvas, x: float, y: float, text: str, size: float, bold: bool = False, align: str = "left", ltr: bool = False
) -> None:
    """`text` at (x, y), left- or right-aligned at x: each run in the face that has its glyphs, shaped,
    right-to-left runs in visual order. A shaped run is marked with its characters (ActualText: its glyph
    codes are not text), in the order of the glyphs as drawn: left to right, as PDF readers expect (they
    put right-to-left words back in logical order themselves). `ltr`: a left-to-right paragraph whatever
    its first letter (a sentence of ours that starts with a name)."""
    line = layout(text, bold, ltr)
    if align == "right":
        x -= line.advance * size / 1000
    for piece in line.pieces:
        if piece.actual is not None:
            pdf.addLiteral(f"/Span <</ActualText <{_utf16_hex(piece.actual)}>>> BDC")
        _draw_piece(pdf, x, y, piece, size, bold)
        if piece.actual is not None:
            pdf.addLiteral("EMC")
        x += piece.advance * size / 1000


def _utf16_hex(text: str) -> str:
    return "FEFF" + text.encode("utf-16-be").hex().upper()


def _draw_piece(pdf: Canvas, x: float, y: float, piece: _Piece, size: float, bold: bool) -> None:
    """A piece in its face; bold in a face without a bold weight is its outline filled and stroked."""
    pdf.setFont(piece.face, size)
    if not bold or piece.face == BOLD:
        pdf.drawString(x, y, piece.glyphs)
        return
    pdf.saveState()
    pdf.setStrokeGray(0)
    pdf.setLineWidth(size * 0.04)
    pdf.drawString(x, y, piece.glyphs, mode=2)
    pdf.restoreState()


_TOKENS = re.compile(
    r"[\u2e80-\u9fff\uac00-\ud7af\uf900-\ufaff\uff00-\uffef]|\S+?(?=[\u2e80-\u9fff\uac00-\ud7af])|\S+|\s+"
)


def wrap(text: str, size: float, max_width: float, bold: bool = False, ltr: bool = False) -> list[str]:
    """`text` in lines no wider than `max_width`: broken at spaces (and between CJK characters); a word
    wider than the line (or a text without spaces: Thai) is broken where it must, between clusters. Never
    cut: every character is on some line (a line of a right-to-left paragraph may start with a mark)."""
    lines: list[str] = []
    current = ""
    for token in _TOKENS.findall(text):
        if width(current + token, size, bold) <= max_width:
            current += token
            continue
        if current.strip():
            lines.append(current.rstrip())
        current = token.lstrip()
        while (cut := _fit(current, size, max_width, bold)) < len(current):  # measures a line's worth, not all
            lines.append(current[:cut])
            current = current[cut:]
    if current.strip() or not lines:
        lines.append(current.rstrip())
    return lines if ltr else _directed(lines, text)


def _directed(lines: list[str], text: str) -> list[str]:
    """The lines of a paragraph keep its direction (that of its first strong character): a line that would
    start the other way (an Arabic name's line beginning with a Latin word) starts with a direction mark."""
    if len(lines) < 2 or _plain(text):
        return lines
    from bidi.algorithm import get_base_level

    base = get_base_level(text)
    mark = "\u200f" if base else "\u200e"  # RIGHT-TO-LEFT MARK, LEFT-TO-RIGHT MARK
    return [line if get_base_level(line) == base else mark + line for line in lines]


def ellipsized(text: str, size: float, max_width: float, bold: bool = False) -> str:
    """`text`, or as much of it as fits in `max_width` with "…" after it (a one-line header)."""
    if width(text, size, bold) <= max_width:
        return text
    return text[: _fit(text, size, max_width - width("\u2026", size, bold), bold)].rstrip() + "\u2026"


def _fit(text: str, size: float, max_width: float, bold: bool) -> int:
    """How many leading characters of `text` fit in `max_width`: at least its first cluster, and never a
    cluster cut (a base and its marks, a conjunct, an emoji sequence stay on one line)."""
    cut = _cluster_end(text, 0)
    while cut < len(text):
        end = _cluster_end(text, cut)
        if width(text[:end], size, bold) > max_width:
            break
        cut = end
    return cut


def _cluster_end(text: str, start: int) -> int:
    """Where the cluster that starts at `start` ends: before the next character that is neither a mark,
    a joiner, a selector or a skin tone, nor follows a joiner or a virama (a conjunct's halant)."""
    end = start + 1
    while end < len(text) and (
        _attaches(text[end]) or text[end - 1] == "\u200d" or unicodedata.combining(text[end - 1]) == 9
    ):
        end += 1
    return end


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

    def text(
        self, x: float, value: str, size: float = 8.5, bold: bool = False, align: str = "left", ltr: bool = False
    ) -> None:
        draw(self.pdf, x, self.y, value, size, bold, align, ltr)

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

"""File parsers: each format becomes a title plus structured sections (heading path, page, sheet).

Scanned PDF pages and images go through OCR (`ocr.py`); the pages it read, or could not, are
listed on the parsed document with their confidence or the reason.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from appliance.errors import InvalidRequest
from appliance.knowledge.ocr import (
    PDF_DPI,
    OcrFailed,
    OcrPage,
    Tesseract,
    blank_pdf_pages,
    image_pages,
    render_pdf_pages,
)


class ParseError(InvalidRequest):
    """A file that cannot be read as its format; the message names the reason."""

    code = "unreadable_document"


@dataclass
class Section:
    """A run of paragraphs under one heading path (and on one page or sheet)."""

    paragraphs: list[str]
    heading: tuple[str, ...] = ()
    page: int | None = None
    sheet: str | None = None


@dataclass
class ParsedDocument:
    title: str
    sections: list[Section] = field(default_factory=list)
    ocr: list[OcrPage] = field(default_factory=list)  # pages OCR read, or that needed it

    @property
    def needs_ocr(self) -> bool:
        """Some page had no text and OCR could not read it."""
        return any(p.error for p in self.ocr)


Parser = Callable[..., ParsedDocument]  # (data, stem), or (data, stem, ocr) for OCR formats
PARSERS: dict[str, Parser] = {}
OCR_FORMATS: set[str] = set()  # formats whose parser takes the OCR engine
_default_ocr: Tesseract | None = None


def parser(*extensions: str, ocr: bool = False):
    def register(func: Parser) -> Parser:
        for ext in extensions:
            PARSERS[ext] = func
            if ocr:
                OCR_FORMATS.add(ext)
        return func

    return register


def supported(name: str) -> bool:
    return Path(name).suffix.lower() in PARSERS


def default_ocr() -> Tesseract:
    global _default_ocr
    if _default_ocr is None:
        _default_ocr = Tesseract()
    return _default_ocr


def parse(data: bytes, name: str, ocr: Tesseract | None = None) -> ParsedDocument:
    """Parse file bytes by the name's extension; raises ParseError saying why it failed.

    `ocr` reads scanned pages (default: Tesseract with kor+eng, when installed).
    """
    ext = Path(name).suffix.lower()
    func = PARSERS.get(ext)
    if func is None:
        raise ParseError(
            f"{name}: unsupported format {ext or '(no extension)'}; "
            f"supported: {', '.join(sorted(PARSERS))}."
        )
    try:
        if ext in OCR_FORMATS:
            doc = func(data, Path(name).stem, ocr or default_ocr())
        else:
            doc = func(data, Path(name).stem)
    except ParseError:
        raise
    except Exception as exc:  # each library fails its own way on corrupt input
        raise ParseError(f"{name}: not a readable {ext[1:]} file ({type(exc).__name__}: {exc}).") from exc
    doc.sections = [s for s in doc.sections if any(p.strip() for p in s.paragraphs)]
    if not doc.sections:
        unread = next((p.error for p in doc.ocr if p.error), None)
        if unread:
            raise ParseError(f"{name}: no text layer; {unread}.")
        if doc.ocr:
            raise ParseError(f"{name}: OCR found no text (a blank or unreadable scan?); "
                             "check the scan, or rescan it at 300 dpi.")
        raise ParseError(f"{name}: no text found.")
    return doc


def decode_text(data: bytes) -> str:
    # Korean offices still save CSV and text in cp949 (Excel's default there).
    for encoding in ("utf-8-sig", "cp949"):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise ParseError("text is neither UTF-8 nor CP949; re-save it as UTF-8.")


class _Outline:
    """Builds sections while headings of various levels open and close."""

    def __init__(self):
        self.sections: list[Section] = []
        self.path: list[tuple[int, str]] = []
        self.current = Section([])

    def heading(self, level: int, text: str) -> None:
        self._flush()
        self.path = [(lvl, t) for lvl, t in self.path if lvl < level] + [(level, text)]
        self.current = Section([], tuple(t for _, t in self.path))

    def add(self, text: str) -> None:
        text = text.strip()
        if text:
            self.current.paragraphs.append(text)

    def _flush(self) -> None:
        if self.current.paragraphs:
            self.sections.append(self.current)

    def done(self) -> list[Section]:
        self._flush()
        self.current = Section([])
        return self.sections


_MD_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")


@parser(".md", ".markdown")
def parse_markdown(data: bytes, stem: str) -> ParsedDocument:
    text = decode_text(data)
    if text.startswith("---\n"):  # front matter is metadata, not content
        end = text.find("\n---", 4)
        text = text[end + 4:] if end > 0 else text
    outline, title, block, fenced = _Outline(), None, [], False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
        match = None if fenced else _MD_HEADING.match(line)
        if match:
            outline.add("\n".join(block))
            block = []
            level, heading = len(match.group(1)), match.group(2)
            if level == 1 and title is None:
                title = heading
            outline.heading(level, heading)
        elif not line.strip() and not fenced:
            outline.add("\n".join(block))
            block = []
        else:
            block.append(line)
    outline.add("\n".join(block))
    return ParsedDocument(title or stem, outline.done())


_TXT_HEADING = re.compile(r"^(\d+(?:\.\d+)*)\.?\s+\S.{0,70}$")


@parser(".txt", ".text")
def parse_text(data: bytes, stem: str) -> ParsedDocument:
    lines = decode_text(data).splitlines()
    title = next((line.strip() for line in lines if line.strip()), stem)
    outline, block = _Outline(), []
    for line in lines:
        stripped = line.strip()
        match = _TXT_HEADING.match(stripped)
        # A numbered short line that does not end like a sentence is a heading ("2. 요청 절차").
        if match and not stripped.endswith((".", "다", "요")):
            outline.add("\n".join(block))
            block = []
            outline.heading(match.group(1).count(".") + 1, stripped)
        elif not stripped:
            outline.add("\n".join(block))
            block = []
        else:
            block.append(stripped)
    outline.add("\n".join(block))
    return ParsedDocument(title[:200], outline.done())


@parser(".html", ".htm")
def parse_html(data: bytes, stem: str) -> ParsedDocument:
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(data, "html.parser")
    for tag in soup(["script", "style", "nav", "footer", "noscript"]):
        tag.decompose()
    h1 = soup.find("h1")
    title = (h1.get_text(" ", strip=True) if h1 else None) or (
        soup.title.get_text(strip=True) if soup.title else stem
    )
    outline = _Outline()
    body = soup.body or soup
    for element in body.find_all(["h1", "h2", "h3", "h4", "h5", "h6", "p", "li", "tr", "pre", "dt", "dd"]):
        if element.name[0] == "h" and element.name[1:].isdigit():
            outline.heading(int(element.name[1]), element.get_text(" ", strip=True))
        elif element.name == "tr":
            cells = [c.get_text(" ", strip=True) for c in element.find_all(["td", "th"])]
            outline.add(" | ".join(c for c in cells if c))
        elif element.find_parent(["li", "tr"]) is None or element.name == "li":
            if element.name == "li" and element.find_parent("li") is not None:
                continue  # nested list items are part of their parent's text
            outline.add(element.get_text(" ", strip=True))
    return ParsedDocument(title, outline.done())


@parser(".pdf", ocr=True)
def parse_pdf(data: bytes, stem: str, ocr: Tesseract) -> ParsedDocument:
    from pypdf import PdfReader

    reader = PdfReader(io.BytesIO(data))
    if reader.is_encrypted:
        raise ParseError("the PDF is password-protected; save an unprotected copy.")
    pages = []
    for page in reader.pages:
        text = page.extract_text() or ""
        # Justified text comes out with runs of spaces between words.
        pages.append([re.sub(r"[ \t\u00a0]{2,}", " ", line).strip() for line in text.splitlines()])
    # A page without a text layer (a scanner's page number aside) is an image: OCR reads it.
    scanned = [n for n, lines in enumerate(pages, start=1)
               if not any(ch.isalpha() for line in lines for ch in line)]
    records: list[OcrPage] = []
    if scanned:
        blank = blank_pdf_pages(data, scanned)
        scanned = [n for n in scanned if n not in blank]
    if scanned:
        images = ((n, image, PDF_DPI) for n, image in render_pdf_pages(data, scanned, PDF_DPI)) \
            if ocr.available else None
        read, records = _ocr_pages(ocr, images, scanned)
        for number, lines in read.items():
            pages[number - 1] = lines
    meta_title = ((reader.metadata.title if reader.metadata else None) or "").strip()
    doc = _paged_document(pages, meta_title, stem)
    doc.ocr = records
    return doc


@parser(".png", ".jpg", ".jpeg", ".tif", ".tiff", ocr=True)
def parse_image(data: bytes, stem: str, ocr: Tesseract) -> ParsedDocument:
    """A scanned page, or a multi-page TIFF: OCR is the only way in."""
    frames = list(image_pages(data))
    numbers = list(range(1, len(frames) + 1))
    images = [(n, image, dpi) for n, (image, dpi) in zip(numbers, frames)] if ocr.available else None
    read, records = _ocr_pages(ocr, images, numbers)
    doc = _paged_document([read.get(n, []) for n in numbers], "", stem)
    doc.ocr = records
    return doc


def _ocr_pages(ocr: Tesseract, images, numbers: list[int]) -> tuple[dict[int, list[str]], list[OcrPage]]:
    """OCR each (page number, image, dpi); a page that fails is recorded with the reason and the
    rest go on. Without OCR (`images` None) every page records what to install."""
    if images is None:
        return {}, [OcrPage(n, None, f"needs OCR: {ocr.problem}") for n in numbers]
    read: dict[int, list[str]] = {}
    records = []
    for number, image, dpi in images:
        try:
            page = ocr.read(image, dpi)
        except OcrFailed as exc:
            records.append(OcrPage(number, None, exc.message))
            continue
        read[number] = page.lines
        records.append(OcrPage(number, page.confidence))
    return read, records


def _paged_document(pages: list[list[str]], meta_title: str, stem: str) -> ParsedDocument:
    """Lines per page to sections: running headers and footers dropped, wrapped lines joined,
    numbered lines become headings."""
    running = _running_lines(pages)
    sections: list[Section] = []
    first = None  # the document's first line, heading or not: its title without metadata
    for number, lines in enumerate(pages, start=1):
        lines = [line for line in lines if line and _page_mark(line) not in running]
        path = sections[-1].heading if sections else ()
        current = Section([], path, page=number)
        for paragraph in _pdf_paragraphs(lines):
            first = first or paragraph
            if _is_pdf_heading(paragraph):
                if current.paragraphs:
                    sections.append(current)
                level = paragraph.split()[0].rstrip(".").count(".") + 1
                path = tuple(current.heading[: level - 1]) + (paragraph,)
                current = Section([], path, page=number)
            else:
                current.paragraphs.append(paragraph)
        if current.paragraphs:
            sections.append(current)
    title = meta_title or (first or stem).splitlines()[0][:200]
    # The title line itself is no content, unless it is a sentence or all there is.
    rest = [[p for p in section.paragraphs if p != title] for section in sections]
    if len(title) <= TITLE_LINE_CHARS and any(rest):
        for section, paragraphs in zip(sections, rest):
            section.paragraphs = paragraphs
    return ParsedDocument(title, sections)


TITLE_LINE_CHARS = 100
_PDF_HEADING = re.compile(r"^\d{1,2}(\.\d{1,2})*\.?\s+\S.{0,60}$")
_PDF_ITEM = re.compile(r"^(?:[-*•·▪◦]|\(?\d{1,2}[.)]|[①-⑳])\s*\S")
_PDF_END = (".", "다", "요", ":", "?", "!", ")", "]", "다.")


def _is_pdf_heading(line: str) -> bool:
    """A short numbered line that does not end like a sentence ("2.1 Approval limits")."""
    return bool(_PDF_HEADING.match(line)) and not line.endswith((".", "다", ":"))


def _page_mark(line: str) -> str:
    return re.sub(r"\d+", "#", line)


def _running_lines(pages: list[list[str]]) -> set[str]:
    """Headers and footers: lines (digits aside, for page numbers) at the top or bottom of most pages."""
    if len(pages) < 2:
        return set()
    counts: dict[str, int] = {}
    for lines in pages:
        edge = [line for line in lines if line][:2] + [line for line in lines if line][-2:]
        for mark in {_page_mark(line) for line in edge}:
            counts[mark] = counts.get(mark, 0) + 1
    return {mark for mark, n in counts.items() if n >= max(2, len(pages) // 2 + 1)}


def _pdf_paragraphs(lines: list[str]) -> list[str]:
    """Lines wrapped at the page width are joined back into their sentence; short lines, list
    items and headings stay lines of their own."""
    if not lines:
        return []
    widths = sorted(len(line) for line in lines)
    full = widths[int(0.8 * (len(widths) - 1))]
    out: list[str] = []
    for line in lines:
        previous = out[-1] if out else ""
        wrapped = previous and len(previous.splitlines()[-1]) >= 0.75 * full and \
            not previous.endswith(_PDF_END) and not _PDF_ITEM.match(line) and \
            not _PDF_HEADING.match(line) and not _is_pdf_heading(previous)
        if wrapped:
            out[-1] = f"{previous} {line}"
        else:
            out.append(line)
    return out


@parser(".docx")
def parse_docx(data: bytes, stem: str) -> ParsedDocument:
    import docx

    document = docx.Document(io.BytesIO(data))
    outline, title = _Outline(), None
    for block in document.element.body.iterchildren():
        tag = block.tag.rsplit("}", 1)[-1]
        if tag == "p":
            paragraph = docx.text.paragraph.Paragraph(block, document)
            style = (paragraph.style.name if paragraph.style is not None else "") or ""
            text = paragraph.text.strip()
            if not text:
                continue
            if style == "Title" or (style.startswith("Heading") and style[7:].strip().isdigit()):
                level = 1 if style == "Title" else int(style[7:])
                title = title or text
                outline.heading(level, text)
            else:
                outline.add(text)
        elif tag == "tbl":
            table = docx.table.Table(block, document)
            for row in table.rows:
                cells = []
                for cell in row.cells:  # merged cells repeat; keep each text once per row
                    if not cells or cells[-1] != cell.text.strip():
                        cells.append(cell.text.strip())
                outline.add(" | ".join(c for c in cells if c))
    core_title = (document.core_properties.title or "").strip()
    return ParsedDocument(core_title or title or stem, outline.done())


def _rows_as_paragraphs(rows: Iterable[list[str]]) -> list[str]:
    """A table becomes one line per row, each value labelled with its column header."""
    rows = [[str(v).strip() if v is not None else "" for v in row] for row in rows]
    rows = [row for row in rows if any(row)]
    if not rows:
        return []
    header, body = rows[0], rows[1:]
    if not body:
        return [" | ".join(header)]
    lines = []
    for row in body:
        pairs = [f"{header[i] if i < len(header) and header[i] else f'col{i + 1}'}: {v}"
                 for i, v in enumerate(row) if v]
        lines.append("; ".join(pairs))
    return lines


@parser(".xlsx", ".xlsm")
def parse_xlsx(data: bytes, stem: str) -> ParsedDocument:
    import openpyxl

    workbook = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    sections = []
    for sheet in workbook.worksheets:
        paragraphs = _rows_as_paragraphs(list(sheet.iter_rows(values_only=True)))
        sections.append(Section(paragraphs, heading=(sheet.title,), sheet=sheet.title))
    title = (workbook.properties.title or "").strip() or stem
    workbook.close()
    return ParsedDocument(title, sections)


@parser(".csv", ".tsv")
def parse_csv(data: bytes, stem: str) -> ParsedDocument:
    text = decode_text(data)
    try:
        dialect = csv.Sniffer().sniff(text[:4096], delimiters=",;\t|")
    except csv.Error:
        dialect = csv.excel
    rows = list(csv.reader(io.StringIO(text), dialect))
    return ParsedDocument(stem.replace("-", " ").replace("_", " "),
                          [Section(_rows_as_paragraphs(rows))])

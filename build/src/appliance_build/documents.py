"""Knowledge-base documents as (heading, text) sections, one reader per format."""

from __future__ import annotations

import csv
import re
from pathlib import Path

FORMATS = (".md", ".txt", ".html", ".htm", ".pdf", ".docx", ".xlsx", ".csv")

Section = tuple[str, str]  # (heading, body)


def read_sections(path: Path) -> list[Section]:
    """Sections of one document; the heading is "" where the format has none."""
    suffix = path.suffix.lower()
    if suffix == ".md":
        return _markdown(path.read_text(encoding="utf-8"))
    if suffix == ".txt":
        return _plain(path.read_text(encoding="utf-8"))
    if suffix in (".html", ".htm"):
        return _html(path.read_text(encoding="utf-8"))
    if suffix == ".pdf":
        return _pdf(path)
    if suffix == ".docx":
        return _docx(path)
    if suffix == ".xlsx":
        return _xlsx(path)
    if suffix == ".csv":
        return _csv(path)
    raise ValueError(f"unsupported document format {suffix}; supported: {', '.join(FORMATS)}")


def _markdown(text: str) -> list[Section]:
    sections: list[Section] = []
    heading, lines = "", []
    for line in text.splitlines():
        match = re.match(r"^#{1,6}\s+(.*)", line)
        if match:
            sections.append((heading, "\n".join(lines)))
            heading, lines = match.group(1).strip(), []
        else:
            lines.append(line)
    sections.append((heading, "\n".join(lines)))
    return _non_empty(sections)


def _plain(text: str) -> list[Section]:
    # Plain-text manuals mark headings as short lines followed by a blank line or an underline.
    sections: list[Section] = []
    for block in re.split(r"\n\s*\n", text):
        lines = [ln for ln in block.strip().splitlines() if not re.fullmatch(r"[=\-]{3,}", ln.strip())]
        if not lines:
            continue
        if len(lines) == 1 and len(lines[0]) < 80 and sections and not sections[-1][1]:
            sections[-1] = (lines[0], "")
        elif len(lines) > 1 and len(lines[0]) < 80 and not lines[0].rstrip().endswith((".", "다.")):
            sections.append((lines[0].strip(), "\n".join(lines[1:])))
        else:
            sections.append(("", "\n".join(lines)))
    return _merge_headingless(_non_empty(sections))


def _html(text: str) -> list[Section]:
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(text, "html.parser")
    for tag in soup(["script", "style", "nav"]):
        tag.decompose()
    sections: list[Section] = []
    heading, parts = (soup.title.get_text(strip=True) if soup.title else ""), []
    body = soup.body or soup
    for element in body.find_all(["h1", "h2", "h3", "h4", "p", "li", "tr", "pre"]):
        if element.name in ("h1", "h2", "h3", "h4"):
            sections.append((heading, "\n".join(parts)))
            heading, parts = element.get_text(" ", strip=True), []
        elif element.name == "tr":
            parts.append(" | ".join(c.get_text(" ", strip=True) for c in element.find_all(["td", "th"])))
        else:
            parts.append(element.get_text(" ", strip=True))
    sections.append((heading, "\n".join(parts)))
    return _non_empty(sections)


def _pdf(path: Path) -> list[Section]:
    from pypdf import PdfReader

    text = "\n\n".join(page.extract_text() or "" for page in PdfReader(str(path)).pages)
    return _plain(text)


def _docx(path: Path) -> list[Section]:
    import docx

    document = docx.Document(str(path))
    sections: list[Section] = []
    heading, parts = "", []
    for paragraph in document.paragraphs:
        style = (paragraph.style.name or "").lower() if paragraph.style is not None else ""
        if style.startswith("heading") or style == "title":
            sections.append((heading, "\n".join(parts)))
            heading, parts = paragraph.text.strip(), []
        elif paragraph.text.strip():
            parts.append(paragraph.text.strip())
    for table in document.tables:
        parts.extend(" | ".join(cell.text.strip() for cell in row.cells) for row in table.rows)
    sections.append((heading, "\n".join(parts)))
    return _non_empty(sections)


def _xlsx(path: Path) -> list[Section]:
    from openpyxl import load_workbook

    workbook = load_workbook(str(path), read_only=True, data_only=True)
    sections = []
    for sheet in workbook.worksheets:
        rows = [" | ".join("" if v is None else str(v) for v in row) for row in sheet.iter_rows(values_only=True)]
        sections.append((sheet.title, "\n".join(r for r in rows if r.strip(" |"))))
    return _non_empty(sections)


def _csv(path: Path) -> list[Section]:
    with path.open(encoding="utf-8", newline="") as fh:
        rows = [" | ".join(row) for row in csv.reader(fh)]
    return _non_empty([(path.stem.replace("-", " "), "\n".join(rows))])


def _non_empty(sections: list[Section]) -> list[Section]:
    return [(h.strip(), b.strip()) for h, b in sections if b.strip()]


def _merge_headingless(sections: list[Section]) -> list[Section]:
    merged: list[Section] = []
    for heading, body in sections:
        if not heading and merged:
            merged[-1] = (merged[-1][0], merged[-1][1] + "\n" + body)
        else:
            merged.append((heading, body))
    return merged

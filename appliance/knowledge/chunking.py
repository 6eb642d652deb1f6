"""Passage chunking: sections merged with their neighbours up to a target size.

A passage should carry its own context, so small sections join the ones that follow (their
headings kept inline as Markdown headings) until the target size; a long section is sliced at
paragraph boundaries, a table repeats its header row in every slice, and a list stays whole
where it fits. Chunks never cross a page or a sheet, so a citation can name it. Sizes are
estimated tokens (about 4 Latin characters or 1.5 Hangul syllables each), so Korean and English
passages hold a similar amount of content.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from appliance.knowledge.parsers import ParsedDocument

HEADING_SEPARATOR = " > "
VERSION = "passages-1"  # bump when chunk boundaries change: knowledge bases are then re-chunked

_HANGUL = re.compile(r"[\uac00-\ud7a3]")
_RULE = re.compile(r"^\s*\|?\s*:?-{2,}:?\s*(\|\s*:?-{2,}:?\s*)*\|?\s*$")
_LIST_ITEM = re.compile(r"^\s*(?:[-*•·▪◦]|\(?\d{1,2}[.)]|[①-⑳])\s+")


@dataclass(frozen=True)
class Chunk:
    ordinal: int
    text: str
    heading: str
    page: int | None = None
    sheet: str | None = None

    def context(self, title: str) -> str:
        """What gets embedded and indexed: the chunk under its title and heading path."""
        where = HEADING_SEPARATOR.join(p for p in (title, self.heading) if p)
        return f"{where}\n{self.text}" if where else self.text


def tokens(text: str) -> int:
    hangul = len(_HANGUL.findall(text))
    return int((len(text) - hangul) / 4 + hangul / 1.5) + 1


@dataclass
class _Part:
    """A section's paragraphs, or one slice of a long section."""

    path: tuple[str, ...]
    page: int | None
    sheet: str | None
    paragraphs: list[str]

    @property
    def size(self) -> int:
        return sum(tokens(p) for p in self.paragraphs)


def _split_sentences(paragraph: str, limit: int) -> list[str]:
    """Break a prose paragraph longer than `limit` tokens at sentence ends, then hard."""
    pieces, current = [], ""
    for sentence in re.split(r"(?<=[.!?。])\s+", paragraph):
        while tokens(sentence) > limit:
            cut = max(1, int(len(sentence) * limit / tokens(sentence)))
            pieces.append(sentence[:cut])
            sentence = sentence[cut:]
        if current and tokens(current) + tokens(sentence) > limit:
            pieces.append(current)
            current = sentence
        else:
            current = f"{current} {sentence}".strip()
    if current:
        pieces.append(current)
    return pieces


def _split_block(paragraph: str, limit: int) -> list[str]:
    """Slice a paragraph to `limit` tokens: tables by rows (header repeated), lists by items."""
    if tokens(paragraph) <= limit:
        return [paragraph]
    lines = paragraph.split("\n")
    if len(lines) > 1:
        header: list[str] = []
        if len(lines) > 2 and _RULE.match(lines[1]):
            header, lines = lines[:2], lines[2:]
        slices, current = [], list(header)
        for line in lines:
            for piece in _split_sentences(line, limit - tokens("\n".join(header))) \
                    if tokens(line) > limit // 2 else [line]:
                if len(current) > len(header) and tokens("\n".join(current + [piece])) > limit:
                    slices.append("\n".join(current))
                    current = list(header)
                current.append(piece)
        if len(current) > len(header):
            slices.append("\n".join(current))
        return slices
    return _split_sentences(paragraph, limit)


def _heading_line(path: tuple[str, ...]) -> str:
    return "#" * min(len(path) + 1, 6) + " " + path[-1]


def chunk_document(doc: ParsedDocument, *, target: int = 220, maximum: int = 380,
                   minimum: int = 60) -> list[Chunk]:
    """Chunks of about `target` estimated tokens, at most `maximum` (a single over-long line
    aside), and at least `minimum` unless a page, sheet or the document ends sooner."""
    parts: list[_Part] = []
    for section in doc.sections:
        path = section.heading[1:] if section.heading[:1] == (doc.title,) else section.heading
        paragraphs = [p.strip() for p in section.paragraphs if p.strip()]
        pieces = [piece for p in paragraphs for piece in _split_block(p, maximum)]
        part = _Part(tuple(path), section.page, section.sheet, [])
        for piece in pieces:
            if part.paragraphs and part.size + tokens(piece) > target and part.size >= minimum:
                parts.append(part)
                part = _Part(part.path, part.page, part.sheet, [])
            part.paragraphs.append(piece)
        if part.paragraphs:
            parts.append(part)
    chunks: list[Chunk] = []
    current: list[_Part] = []

    def flush() -> None:
        if not current:
            return
        first = current[0]
        lines: list[str] = []
        for i, part in enumerate(current):
            # Headings of the sections merged in stay in the text; the first one is the chunk's.
            if i and part.path and part.path != current[i - 1].path:
                lines.append(_heading_line(part.path))
            lines.extend(part.paragraphs)
        chunks.append(Chunk(len(chunks), "\n".join(lines), HEADING_SEPARATOR.join(first.path),
                            first.page, first.sheet))
        current.clear()

    for part in parts:
        if current:
            size = sum(p.size for p in current)
            same_place = (part.page, part.sheet) == (current[0].page, current[0].sheet)
            fits = size + part.size + 4 <= maximum
            # Below the target, the next section joins; a tiny one joins a little past it.
            tiny = part.size < minimum // 2 and size + part.size <= 1.3 * target
            if not (same_place and fits and (size < target or tiny)):
                flush()
        current.append(part)
    flush()
    return _merge_small_tail(chunks, minimum, maximum)


def _merge_small_tail(chunks: list[Chunk], minimum: int, maximum: int) -> list[Chunk]:
    """A last chunk too small to stand on its own joins the one before it (same page/sheet)."""
    if len(chunks) < 2:
        return chunks
    last, before = chunks[-1], chunks[-2]
    if tokens(last.text) >= minimum or (last.page, last.sheet) != (before.page, before.sheet) \
            or tokens(before.text) + tokens(last.text) > maximum * 1.2:
        return chunks
    heading = "" if last.heading == before.heading or not last.heading else \
        _heading_line(tuple(last.heading.split(HEADING_SEPARATOR))) + "\n"
    merged = Chunk(before.ordinal, f"{before.text}\n{heading}{last.text}", before.heading,
                   before.page, before.sheet)
    return [*chunks[:-2], merged]

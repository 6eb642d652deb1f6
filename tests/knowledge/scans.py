"""Scanned documents made for the OCR tests: text drawn with the Nanum font (Debian's fonts-nanum)
into images, image-only PDFs, and PDFs that mix a text page with a scanned one."""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter, ImageFont

FONT = Path("/usr/share/fonts/truetype/nanum/NanumGothic.ttf")
DPI = 300  # the PDFs' pages are drawn at the resolution OCR renders them at


def page(lines: list[str], *, size: int = 40, width: int = 1600, blur: float = 0.0) -> Image.Image:
    """A white page with one text line per entry; `blur` makes a bad scan."""
    font = ImageFont.truetype(str(FONT), size)
    step = int(size * 1.8)
    image = Image.new("L", (width, step * len(lines) + 6 * size), 255)  # margins, as on paper
    draw = ImageDraw.Draw(image)
    for number, line in enumerate(lines):
        draw.text((size * 2, size * 3 + number * step), line, font=font, fill=0)
    return image.filter(ImageFilter.GaussianBlur(blur)) if blur else image


def image_bytes(image: Image.Image, format: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=format)
    return buffer.getvalue()


def tiff(pages: list[Image.Image]) -> bytes:
    """A multi-page TIFF, as document scanners write them."""
    buffer = io.BytesIO()
    pages[0].save(buffer, format="TIFF", save_all=True, append_images=pages[1:], compression="tiff_lzw")
    return buffer.getvalue()


def image_pdf(pages: list[Image.Image]) -> bytes:
    """A PDF of page images only: no text layer, as a scanner without OCR makes it."""
    buffer = io.BytesIO()
    pages[0].save(buffer, format="PDF", save_all=True, append_images=pages[1:], resolution=DPI)
    return buffer.getvalue()


def mixed_pdf(text_lines: list[str], scanned: Image.Image) -> bytes:
    """Page 1 typed (a text layer), page 2 a scanned image."""
    from fpdf import FPDF

    pdf = FPDF()
    pdf.add_font("Nanum", fname=str(FONT))
    pdf.add_page()
    pdf.set_font("Nanum", size=12)
    pdf.multi_cell(0, 8, "\n".join(text_lines))
    pdf.add_page()
    pdf.image(scanned, x=10, y=10, w=190)
    return bytes(pdf.output())

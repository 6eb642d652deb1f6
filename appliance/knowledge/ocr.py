"""OCR of page images through the Tesseract command line: each page's text lines and its mean
word confidence. OCR is optional: without Tesseract (or a language pack) a scanned page is
reported with what to install, never read as empty."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass

INSTALL = {"": "tesseract-ocr", "kor": "tesseract-ocr-kor", "eng": "tesseract-ocr-eng"}
# Renders scanned PDF pages at the resolution Tesseract is trained for.
PDF_DPI = 300
RECHECK_SECONDS = 60.0


def install_hint(languages: str = "kor+eng") -> str:
    """The Debian packages that bring Tesseract and these languages."""
    packages = [INSTALL[""]] + [INSTALL.get(lang, f"tesseract-ocr-{lang}") for lang in languages.split("+")]
    return "apt-get install " + " ".join(packages)


@dataclass(frozen=True)
class PageText:
    """One page as OCR read it; `confidence` is the mean word confidence (0-100), None without words."""

    lines: list[str]
    confidence: float | None
    words: int


@dataclass(frozen=True)
class OcrPage:
    """What a document records per OCR'd page: its confidence, or why it could not be read."""

    page: int
    confidence: float | None = None
    error: str = ""

    def as_dict(self) -> dict:
        return {"page": self.page, "confidence": self.confidence, "error": self.error}


class Tesseract:
    """Runs `tesseract` once per page image (text for the lines, TSV for word confidences).

    `page_mode` is Tesseract's --psm: 4 (one column of text of varying sizes) keeps Korean
    lines that the default automatic layout (3) drops or garbles.
    """

    def __init__(self, *, languages: str = "kor+eng", page_mode: int = 4, timeout: float = 120.0,
                 enabled: bool = True, binary: str = "tesseract"):
        self.languages = languages
        self.page_mode = page_mode
        self.timeout = timeout
        self.enabled = enabled
        self.binary = binary
        self._checked: tuple[float, str | None, str | None] | None = None

    @classmethod
    def from_settings(cls, settings) -> Tesseract:
        return cls(languages=settings.ocr_languages, page_mode=settings.ocr_page_mode,
                   timeout=settings.ocr_timeout_seconds, enabled=settings.ocr)

    @property
    def problem(self) -> str | None:
        """What it takes to OCR here (a scanned page "needs OCR: <this>"), or None when it can;
        checked again after a while, so installing Tesseract needs no restart."""
        return self._check()[0]

    @property
    def available(self) -> bool:
        return self.problem is None

    def version(self) -> str | None:
        """Tesseract's version line, e.g. "tesseract 5.3.0"; None when it is not installed."""
        return self._check()[1]

    def _check(self) -> tuple[str | None, str | None]:
        now = time.monotonic()
        if self._checked is None or now - self._checked[0] > RECHECK_SECONDS:
            self._checked = (now, *self._find())
        return self._checked[1], self._checked[2]

    def _find(self) -> tuple[str | None, str | None]:
        path = shutil.which(self.binary)
        if path is None:
            return f"install Tesseract ({install_hint(self.languages)})", None
        try:
            version = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30)
            listed = subprocess.run([path, "--list-langs"], capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.SubprocessError) as exc:
            return f"make {path} run ({exc}), or reinstall it ({install_hint(self.languages)})", None
        first = (version.stdout or version.stderr).strip().splitlines()
        version_line = first[0].strip() if first else None
        if not self.enabled:
            return "turn it on (knowledge.ocr = true)", version_line
        have = {line.strip() for line in listed.stdout.splitlines()[1:]}
        missing = [lang for lang in self.languages.split("+") if lang not in have]
        if missing:
            packages = " ".join(INSTALL.get(lang, f"tesseract-ocr-{lang}") for lang in missing)
            return f"install the {', '.join(missing)} language data (apt-get install {packages})", version_line
        return None, version_line

    def status(self) -> dict:
        """For /api/status and the installer: whether scanned pages can be read, and if not, why."""
        return {"available": self.available, "languages": self.languages, "version": self.version(),
                "problem": self.problem}

    def read(self, image, dpi: int | None = None) -> PageText:
        """OCR one page image (a PIL image); raises OcrFailed saying why."""
        if self.problem is not None:
            raise OcrFailed(f"needs OCR: {self.problem}")
        buffer = io.BytesIO()
        image.convert("L").save(buffer, format="PNG")
        with tempfile.TemporaryDirectory(prefix="ocr-") as folder:
            base = os.path.join(folder, "page")
            command = [shutil.which(self.binary) or self.binary, "stdin", base, "-l", self.languages,
                       "--psm", str(self.page_mode)]
            if dpi:
                command += ["--dpi", str(dpi)]
            # One thread per page: OpenMP threads contend with the server's own on a busy machine.
            env = {**os.environ, "OMP_THREAD_LIMIT": "1"}
            try:
                done = subprocess.run(command + ["txt", "tsv"], input=buffer.getvalue(),
                                      capture_output=True, timeout=self.timeout, env=env)
            except subprocess.TimeoutExpired:
                raise OcrFailed(f"OCR took longer than {self.timeout:.0f} s "
                                "(knowledge.ocr_timeout_seconds); the page is left out") from None
            except OSError as exc:
                raise OcrFailed(f"OCR could not start ({exc})") from exc
            if done.returncode != 0:
                detail = done.stderr.decode(errors="replace").strip().splitlines()
                raise OcrFailed(f"OCR failed ({detail[-1] if detail else f'exit {done.returncode}'})")
            text = _read(base + ".txt")
            confidences = _word_confidences(_read(base + ".tsv"))
        lines = [line.strip() for line in text.splitlines()]
        mean = round(sum(confidences) / len(confidences), 1) if confidences else None
        return PageText([line for line in lines if line], mean, len(confidences))


class OcrFailed(Exception):
    """A page OCR could not read; the message says why (and what to install, when that is why)."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


def _read(path: str) -> str:
    with open(path, encoding="utf-8", errors="replace") as file:
        return file.read()


def _word_confidences(tsv: str) -> list[float]:
    """Tesseract's TSV: level 5 rows are words, with a confidence of 0-100 (-1 for non-words)."""
    out = []
    for row in tsv.splitlines()[1:]:
        fields = row.split("\t")
        if len(fields) >= 12 and fields[0] == "5" and fields[11].strip():
            try:
                conf = float(fields[10])
            except ValueError:
                continue
            if conf >= 0:
                out.append(conf)
    return out


def image_pages(data: bytes) -> Iterator[tuple[object, int | None]]:
    """Each frame of an image file (a TIFF may hold many pages), upright, with its DPI if recorded."""
    from PIL import Image, ImageOps, ImageSequence

    with Image.open(io.BytesIO(data)) as image:
        for frame in ImageSequence.Iterator(image):
            dpi = frame.info.get("dpi")
            resolution = int(round(dpi[0])) if dpi and dpi[0] and dpi[0] >= 70 else None
            page = ImageOps.exif_transpose(frame.copy())
            if page.mode in ("RGBA", "LA", "PA") or "transparency" in page.info:
                # Transparent pixels are black underneath: on white, as a viewer shows them.
                page = Image.alpha_composite(Image.new("RGBA", page.size, "white"), page.convert("RGBA"))
            yield page, resolution


def render_pdf_pages(data: bytes, numbers: list[int], dpi: int = PDF_DPI) -> Iterator[tuple[int, object]]:
    """(page number, image) of the given 1-based PDF pages, rendered with PDFium."""
    import pypdfium2 as pdfium

    pdf = pdfium.PdfDocument(data)
    try:
        for number in numbers:
            page = pdf[number - 1]
            try:
                image = page.render(scale=dpi / 72, grayscale=True).to_pil()
            finally:
                page.close()
            yield number, image
    finally:
        pdf.close()


def blank_pdf_pages(data: bytes, numbers: list[int]) -> set[int]:
    """Those of the given pages that draw nothing at all (no image, path or text object)."""
    import pypdfium2 as pdfium

    pdf = pdfium.PdfDocument(data)
    try:
        blank = set()
        for number in numbers:
            page = pdf[number - 1]
            try:
                if next(iter(page.get_objects()), None) is None:
                    blank.add(number)
            finally:
                page.close()
        return blank
    finally:
        pdf.close()


def availability(settings=None) -> str:
    """One line saying whether this machine can OCR scanned documents (the installer prints it);
    `settings` are the knowledge settings, by default those the appliance loads."""
    if settings is None:
        from appliance.errors import ConfigError
        from appliance.settings import KnowledgeSettings, load_settings

        try:
            settings = load_settings().knowledge
        except ConfigError:  # the self-test reports a bad config file on its own
            settings = KnowledgeSettings()
    ocr = Tesseract.from_settings(settings)
    if ocr.available:
        return f"OCR: available ({ocr.version() or 'tesseract'}, {ocr.languages}); scanned PDFs and images are read."
    return f"OCR: not available; scanned PDFs and images are reported as needing it. To read them, {ocr.problem}."

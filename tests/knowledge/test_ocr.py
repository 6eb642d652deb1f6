"""OCR with the real Tesseract (Debian's tesseract-ocr with Korean and English): scanned images and
image-only PDFs are read page by page, recorded with their confidence, and found by search; a
page OCR cannot read is reported, never silently empty."""

from __future__ import annotations

import pytest

from appliance.knowledge.ocr import Tesseract, availability
from appliance.knowledge.parsers import ParseError, parse

from . import scans

TRAVEL = ["2. 출장비 정산 절차",
          "출장비는 귀국 후 7일 이내에 경비 정산 화면에서 신청합니다.",
          "Travel expenses are settled in transaction TE-45 within seven days."]
MISSING = Tesseract(binary="/nonexistent/tesseract")  # a server without Tesseract installed


def test_a_scanned_korean_and_english_page_is_found_by_search(kb, ocr):
    report = kb.ingest_bytes("travel-scan.png", scans.image_bytes(scans.page(TRAVEL)))
    assert report.added == ["travel-scan.png"] and not report.warnings
    record = kb.store.by_source("travel-scan.png")
    [page] = record.ocr
    assert page["page"] == 1 and page["confidence"] >= 80 and not page["error"]
    for query in ("출장비 정산 신청", "travel expenses settled TE-45"):
        hits = kb.search(query, 3)
        assert hits and hits[0].document == "travel-scan.png", query
        assert hits[0].page == 1
    assert record.title == "2. 출장비 정산 절차"  # the first line, as for a PDF without a title


def test_an_image_only_pdf_is_read_page_by_page_like_a_typed_one(kb, ocr):
    header = "ACME ERP Manual - Page {n}"
    pages = [
        scans.page([header.format(n=1), "1. Purchase orders",
                     "Every purchase order above KRW 5,000,000 needs the approval of",
                     "a team lead before it is sent to the supplier in transaction PO-120."]),
        scans.page([header.format(n=2), "2. 구매 요청 승인",
                     "구매 요청은 팀장이 승인한 뒤 구매팀이 발주합니다. 금액이 천만 원을",
                     "넘으면 본부장 승인이 추가로 필요합니다."]),
        scans.page([header.format(n=3), "3. Goods receipt",
                     "Goods are received against the order in transaction MIGO-11 by the",
                     "warehouse, which checks the quantity on the delivery note."]),
    ]
    data = scans.image_pdf(pages)
    doc = parse(data, "manual-scan.pdf", ocr)
    assert [p.page for p in doc.ocr] == [1, 2, 3]
    assert all(p.confidence and p.confidence >= 80 for p in doc.ocr)
    text = "\n".join(p for s in doc.sections for p in s.paragraphs)
    assert "ACME ERP Manual" not in text  # the running header is gone from every page
    sections = {s.heading[-1]: s for s in doc.sections}
    assert list(sections) == ["1. Purchase orders", "2. 구매 요청 승인", "3. Goods receipt"]
    assert [s.page for s in sections.values()] == [1, 2, 3]
    # Lines wrapped at the page width are one paragraph again.
    assert sections["1. Purchase orders"].paragraphs == [
        "Every purchase order above KRW 5,000,000 needs the approval of a team lead before it is "
        "sent to the supplier in transaction PO-120."]
    assert "천만 원을 넘으면 본부장 승인" in sections["2. 구매 요청 승인"].paragraphs[0]
    # Ingested, each page is found by search in its language, with its page number.
    assert kb.ingest_bytes("manual-scan.pdf", data).added == ["manual-scan.pdf"]
    korean = kb.search("본부장 승인 구매 요청", 1)[0]
    english = kb.search("goods receipt MIGO-11 delivery note", 1)[0]
    assert (korean.document, korean.page) == ("manual-scan.pdf", 2)
    assert (english.document, english.page) == ("manual-scan.pdf", 3)


def test_a_pdf_with_a_text_layer_and_a_scanned_page_reads_both(ocr):
    data = scans.mixed_pdf(["1. 개요", "이 문서는 출장 규정을 설명합니다."], scans.page(TRAVEL))
    doc = parse(data, "travel.pdf", ocr)
    assert [p.page for p in doc.ocr] == [2]  # only the page without text went through OCR
    pages = {s.page: " ".join(s.paragraphs) for s in doc.sections}
    assert "출장 규정" in pages[1]
    assert "TE-45" in pages[2]


@pytest.mark.parametrize("fmt,name", [("JPEG", "memo.jpg"), ("TIFF", "memo.tif")])
def test_jpeg_and_tiff_scans_are_read(ocr, fmt, name):
    doc = parse(scans.image_bytes(scans.page(TRAVEL), fmt), name, ocr)
    assert "TE-45" in " ".join(p for s in doc.sections for p in s.paragraphs)


def test_a_transparent_png_is_read_on_white(ocr):
    from PIL import Image

    text = scans.page(TRAVEL)
    ink = Image.new("RGBA", text.size, (0, 0, 0, 0))  # transparent, black underneath
    ink.paste((0, 0, 0, 255), mask=text.point(lambda v: 255 - v))
    doc = parse(scans.image_bytes(ink), "cutout.png", ocr)
    assert "TE-45" in " ".join(p for s in doc.sections for p in s.paragraphs)


def test_each_page_of_a_multipage_tiff_is_its_own_page(ocr):
    data = scans.tiff([scans.page(["Page one covers leave requests in HR200."]),
                       scans.page(["Page two covers overtime in HR300."])])
    doc = parse(data, "hr-scan.tiff", ocr)
    pages = {s.page: " ".join(s.paragraphs) for s in doc.sections}
    assert "HR300" in pages[2] and [p.page for p in doc.ocr] == [1, 2]


def test_a_low_confidence_page_is_reported_in_the_ingest_result(kb, ocr):
    blurred = scans.image_bytes(scans.page(TRAVEL, size=28, blur=3.3))
    report = kb.ingest_bytes("faded-scan.png", blurred)
    assert report.added == ["faded-scan.png"]
    [warning] = report.warnings_of("faded-scan.png")
    assert warning.startswith("page 1: low OCR confidence") and "rescan" in warning
    assert kb.store.by_source("faded-scan.png").ocr[0]["confidence"] < kb.settings.ocr_min_confidence
    assert report.as_dict()["warnings"] == [{"document": "faded-scan.png", "message": warning}]


def test_without_tesseract_a_scan_fails_saying_what_to_install():
    with pytest.raises(ParseError) as error:
        parse(scans.image_bytes(scans.page(TRAVEL)), "scan.png", MISSING)
    assert error.value.message == ("scan.png: no text layer; needs OCR: install Tesseract (apt-get install "
                                   "tesseract-ocr tesseract-ocr-kor tesseract-ocr-eng).")


def test_without_tesseract_the_scanned_page_of_a_pdf_is_reported_and_read_once_ocr_is_there(kb, ocr):
    data = scans.mixed_pdf(["1. 개요", "이 문서는 출장 규정을 설명합니다."], scans.page(TRAVEL))
    kb.ingestor.ocr = MISSING
    report = kb.ingest_bytes("travel.pdf", data)
    assert report.added == ["travel.pdf"]
    assert report.warnings_of("travel.pdf") == [
        "page 2 needs OCR: install Tesseract (apt-get install tesseract-ocr tesseract-ocr-kor "
        "tesseract-ocr-eng)"]
    assert kb.store.by_source("travel.pdf").needs_ocr
    assert not any(h.document == "travel.pdf" for h in kb.search("TE-45 travel expenses", 5))

    kb.ingestor.ocr = ocr  # installed now: the same file is read again, not "unchanged"
    report = kb.ingest_bytes("travel.pdf", data)
    assert report.updated == ["travel.pdf"] and not report.warnings
    assert not kb.store.by_source("travel.pdf").needs_ocr
    assert kb.search("TE-45 travel expenses", 1)[0].document == "travel.pdf"


def test_a_missing_language_pack_and_ocr_turned_off_are_named():
    assert Tesseract(languages="kor+eng+jpn").problem == \
        "install the jpn language data (apt-get install tesseract-ocr-jpn)"
    assert Tesseract(enabled=False).problem == "turn it on (knowledge.ocr = true)"


def test_the_installer_line_says_whether_ocr_is_available(ocr, kb_settings):
    assert availability(kb_settings.knowledge).startswith("OCR: available (tesseract 5")
    kb_settings.knowledge.ocr = False
    assert availability(kb_settings.knowledge) == (
        "OCR: not available; scanned PDFs and images are reported as needing it. To read them, "
        "turn it on (knowledge.ocr = true).")

from pathlib import Path

import pytest

from appliance.knowledge.chunking import chunk_document
from appliance.knowledge.parsers import ParseError, parse

from .conftest import SAMPLE

# One real sample document per format, and a phrase each must yield.
CASES = [
    ("purchasing/purchase-order-approval.md", "WF-PO-01"),
    ("inventory/material-master-creation-ko.txt", "자재마스터"),
    ("sales/delivery-and-shipping.html", "DL200"),
    ("admin/vpn-remote-access.pdf", "VPN"),
    ("hr/business-trip-policy.docx", "trip"),
    ("accounting/payment-approval-matrix.xlsx", ""),
    ("admin/system-error-codes.csv", "SYS-E-1005"),
]


@pytest.mark.parametrize("relative,phrase", CASES, ids=[Path(c[0]).suffix for c in CASES])
def test_each_format_parses_into_chunks_that_keep_their_source(relative, phrase):
    doc = parse((SAMPLE / relative).read_bytes(), relative)
    chunks = chunk_document(doc, size=900, overlap=150)
    assert doc.title and chunks
    text = "\n".join(c.text for c in chunks)
    assert phrase.lower() in text.lower()
    assert all(len(c.text) <= 900 for c in chunks)
    suffix = Path(relative).suffix
    if suffix == ".pdf":
        assert all(c.page for c in chunks)
    if suffix == ".xlsx":
        assert all(c.sheet for c in chunks)
    if suffix in (".md", ".html", ".docx"):
        assert any(c.heading for c in chunks)


def test_markdown_heading_path_nests():
    doc = parse(b"# Guide\n\n## Orders\n\n### Release\n\nRelease with PO120.\n\n## Returns\n\nUse RT1.",
                "guide.md")
    chunks = chunk_document(doc)
    assert [c.heading for c in chunks] == ["Orders > Release", "Returns"]
    assert chunks[0].context(doc.title).startswith("Guide > Orders > Release")


def test_long_sections_are_split_with_overlap():
    paragraphs = "\n\n".join(f"Paragraph {i} " + "word " * 40 for i in range(30))
    chunks = chunk_document(parse(f"# T\n\n{paragraphs}".encode(), "t.md"), size=600, overlap=250)
    assert len(chunks) > 3
    for before, after in zip(chunks, chunks[1:]):
        assert before.text.splitlines()[-1] in after.text  # the tail paragraph carries over


def test_cp949_csv_is_read():
    data = "코드,설명\nE1,재고 부족\n".encode("cp949")
    chunks = chunk_document(parse(data, "codes.csv"))
    assert "설명: 재고 부족" in chunks[0].text


@pytest.mark.parametrize("name", ["broken.pdf", "broken.docx", "broken.xlsx"])
def test_broken_files_raise_with_a_reason(name):
    with pytest.raises(ParseError, match=name):
        parse(b"this is not really a " + name.encode(), name)


def test_unsupported_format_names_the_supported_ones():
    with pytest.raises(ParseError, match="supported: .*\\.md"):
        parse(b"x", "picture.png")

from pathlib import Path

import pytest

from appliance.knowledge.chunking import chunk_document, tokens
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
    chunks = chunk_document(doc, target=220, maximum=380)
    assert doc.title and chunks
    text = "\n".join(c.text for c in chunks)
    assert phrase.lower() in text.lower()
    assert all(tokens(c.text) <= 380 for c in chunks)
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
    assert [c.heading for c in chunks] == ["Orders > Release"]
    assert chunks[0].context(doc.title).startswith("Guide > Orders > Release")
    # The small sibling section joins the passage, its heading kept inline.
    assert chunks[0].text.splitlines() == ["Release with PO120.", "## Returns", "Use RT1."]


def test_small_sections_merge_up_to_the_target_and_never_leave_a_lone_heading():
    sections = "\n\n".join(f"## Step {i}\n\nDo thing {i} in transaction TX{i}0." for i in range(40))
    chunks = chunk_document(parse(f"# T\n\n{sections}".encode(), "t.md"), target=120, maximum=200)
    assert 3 <= len(chunks) < 40
    assert all(30 <= tokens(c.text) <= 200 for c in chunks)
    assert all(not c.text.splitlines()[-1].startswith("#") for c in chunks)


def test_a_long_table_is_sliced_with_its_header_in_every_slice():
    rows = "\n".join(f"| R{i} | value {i} with some words to make the row longer |" for i in range(60))
    doc = parse(f"# T\n\n## Codes\n\n| Code | Meaning |\n|---|---|\n{rows}\n".encode(), "t.md")
    chunks = chunk_document(doc, target=150, maximum=250)
    assert len(chunks) > 2
    for chunk in chunks:
        assert chunk.text.startswith("| Code | Meaning |\n|---|---|")
        assert tokens(chunk.text) <= 250
    assert "| R59 |" in chunks[-1].text


def test_a_list_that_fits_stays_whole():
    intro = "Intro sentence with enough words to matter here. " * 12
    steps = "\n".join(f"{i}. Step number {i} of the procedure." for i in range(1, 9))
    doc = parse(f"# T\n\n## A\n\n{intro}\n\n{steps}\n".encode(), "t.md")
    chunks = chunk_document(doc, target=150, maximum=300)
    holding = [c for c in chunks if "1. Step number 1" in c.text]
    assert len(holding) == 1 and "8. Step number 8" in holding[0].text


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
        parse(b"x", "drawing.svg")

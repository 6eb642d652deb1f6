"""Access groups: a restricted document never reaches a caller outside its groups."""

SECRET = b"# Executive bonus pool\n\nThe 2024 executive bonus pool is KRW 900,000,000 (code BON-77).\n"
PUBLIC = b"# Canteen\n\nThe canteen opens at 11:30 and the bonus coffee card is at reception.\n"


def test_restricted_documents_are_filtered_by_group(kb):
    kb.ingest_bytes("bonus.md", SECRET, ["executives"])
    kb.ingest_bytes("canteen.md", PUBLIC)
    for mode in ("hybrid", "dense", "keyword"):
        outsider = kb.search("executive bonus pool BON-77", 10, groups=["all"], mode=mode)
        assert all(h.document != "bonus.md" for h in outsider), mode
        insider = kb.search("executive bonus pool BON-77", 10, groups=["executives"], mode=mode)
        assert insider[0].document == "bonus.md", mode
    assert kb.search("executive bonus pool", 10)[0].document == "bonus.md"  # the operator sees all
    assert kb.access.filter(["all"]).hidden() and kb.access.filter(["all", "executives"]) is None


def test_regrouping_an_unchanged_document_reaches_the_filter_at_once(kb):
    kb.ingest_bytes("bonus.md", SECRET, ["executives"])
    assert not kb.search("executive bonus pool BON-77", 5, groups=["all"])
    kb.ingest_bytes("bonus.md", SECRET, ["all"])  # same bytes, new groups: no re-embedding
    assert kb.search("executive bonus pool BON-77", 5, groups=["all"])[0].document == "bonus.md"
    kb.ingest_bytes("bonus.md", SECRET, ["executives"])
    assert all(h.document != "bonus.md" for h in kb.search("bonus BON-77", 5, groups=["all"]))

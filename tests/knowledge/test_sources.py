"""Watched sources on a real folder: new and changed files go in, deleted ones come out (only the
source's own), unreadable ones are reported while the rest go on, and every run is recorded."""

from __future__ import annotations

import os
import shutil

import pytest

from appliance.errors import ConfigError, Conflict, NotFound
from appliance.knowledge.knowledge_base import KnowledgeBase
from appliance.settings import SourceSettings, load_settings

from . import scans

LEAVE = "# Annual leave\n\nAnnual leave is requested in transaction HR200 two weeks ahead.\n"
OVERTIME = "# Overtime\n\nOvertime above 12 hours a week needs approval in HR300.\n"


@pytest.fixture
def share(tmp_path):
    """A folder as a mounted file share holds it: documents in subfolders, and some clutter."""
    root = tmp_path / "share"
    (root / "hr").mkdir(parents=True)
    (root / "hr" / "leave.md").write_text(LEAVE)
    (root / "hr" / "overtime.md").write_text(OVERTIME)
    (root / "hr" / "~$leave.docx").write_bytes(b"an Office lock file")
    (root / "archive.zip").write_bytes(b"PK not a document")
    (root / ".snapshot").mkdir()
    (root / ".snapshot" / "old.md").write_text("# Old\n\nHidden folders are not read.\n")
    return root


@pytest.fixture
def watched(kb_settings, embedder, share):
    """A knowledge base watching `share` as "hr-share" for the hr group."""
    kb_settings.knowledge.sources = [SourceSettings(name="hr-share", path=str(share), groups=["hr"])]
    base = KnowledgeBase.open(kb_settings, embedder=embedder)
    yield base
    base.close()


def touch_later(path, seconds: float = 5.0) -> None:
    """Move a file's mtime forward, as an edit on the share would."""
    stat = path.stat()
    os.utime(path, (stat.st_atime, stat.st_mtime + seconds))


def test_a_first_run_ingests_the_folder_with_the_sources_groups(watched):
    run = watched.sources.run("hr-share")
    assert run["state"] == "done" and run["trigger"] == "cli"
    assert (run["added"], run["skipped"], run["failed"]) == (2, 1, 0)  # the zip is skipped
    documents = {d.source: d for d in watched.store.documents()}
    assert set(documents) == {"hr-share/hr/leave.md", "hr-share/hr/overtime.md"}
    assert all(d.origin == "hr-share" and d.groups == ("hr",) for d in documents.values())
    assert watched.search("HR200 annual leave", 1, groups=["hr"])[0].document == "hr-share/hr/leave.md"
    assert not watched.search("HR200 annual leave", 3, groups=["sales"])


def test_changed_files_are_updated_and_unchanged_ones_left_alone(watched, share):
    watched.sources.run("hr-share")
    (share / "hr" / "leave.md").write_text(LEAVE.replace("two weeks", "ten days"))
    touch_later(share / "hr" / "leave.md")
    (share / "hr" / "travel.md").write_text("# Travel\n\nTrips are booked in TR-77.\n")
    run = watched.sources.run("hr-share")
    assert (run["added"], run["updated"], run["unchanged"], run["removed"]) == (1, 1, 1, 0)
    assert "ten days" in watched.search("HR200 annual leave", 1)[0].text
    # A file touched but not changed is read and kept as it was.
    touch_later(share / "hr" / "overtime.md")
    before = watched.version
    run = watched.sources.run("hr-share")
    assert (run["unchanged"], run["updated"]) == (3, 0) and watched.version == before


def test_deleted_files_are_removed_but_only_the_sources_own_documents(watched, share, tmp_path):
    watched.ingest_bytes("policy.md", b"# Policy\n\nUploaded by hand; stays.\n")
    other = tmp_path / "other"
    other.mkdir()
    (other / "leave.md").write_text(LEAVE)
    watched.sources.settings["other"] = SourceSettings(name="other", path=str(other))
    watched.sources.run("hr-share")
    watched.sources.run("other")
    (share / "hr" / "leave.md").unlink()
    run = watched.sources.run("hr-share")
    assert run["removed"] == 1
    assert {d.source for d in watched.store.documents()} == {
        "hr-share/hr/overtime.md", "other/leave.md", "policy.md"}
    assert not any(h.document == "hr-share/hr/leave.md" for h in watched.search("HR200", 5))


def test_unreadable_files_are_reported_and_the_rest_go_in(watched, share):
    (share / "broken.pdf").write_bytes(b"%PDF-1.4 cut off in the copy")
    (share / "hr" / "huge.md").write_bytes(b"# Huge\n\n" + b"x" * 2048)
    watched.settings.max_upload_bytes = 1024
    run = watched.sources.run("hr-share")
    assert (run["state"], run["added"], run["failed"]) == ("done", 2, 2)
    reasons = {e["file"]: e["reason"] for e in run["errors"]}
    assert set(reasons) == {"broken.pdf", "hr/huge.md"}
    assert reasons["broken.pdf"].startswith("not a readable pdf file")
    assert "knowledge.max_upload_bytes" in reasons["hr/huge.md"]


def test_a_scanned_file_on_the_share_goes_through_ocr_and_low_confidence_is_reported(watched, share, ocr):
    travel = ["Travel expenses are settled in transaction TE-45 within seven days."]
    (share / "travel-scan.png").write_bytes(scans.image_bytes(scans.page(travel)))
    (share / "faded.png").write_bytes(scans.image_bytes(scans.page(travel, size=28, blur=3.3)))
    run = watched.sources.run("hr-share")
    assert (run["added"], run["failed"]) == (4, 0), run["errors"]
    [warning] = run["warnings"]
    assert warning["file"] == "faded.png" and "low OCR confidence" in warning["message"]
    assert watched.search("TE-45 travel expenses", 1)[0].document == "hr-share/travel-scan.png"


def test_a_missing_or_emptied_folder_changes_nothing(watched, share):
    watched.sources.run("hr-share")
    moved = share.with_name("share-unmounted")
    share.rename(moved)
    run = watched.sources.run("hr-share")
    assert run["state"] == "failed" and "is the share mounted?" in run["message"]
    share.mkdir()  # an empty mount point where the share was
    run = watched.sources.run("hr-share")
    assert run["state"] == "failed" and "nothing was removed" in run["message"]
    assert len(watched.store.documents_from("hr-share")) == 2
    shutil.rmtree(share)
    moved.rename(share)
    assert watched.sources.run("hr-share")["state"] == "done"


def test_runs_are_recorded_one_at_a_time_per_source(watched):
    run = watched.sources.begin("hr-share", "manual")
    with pytest.raises(Conflict, match="already running"):
        watched.sources.begin("hr-share", "manual")
    assert watched.sources.describe()[0]["running"]
    watched.sources.execute(run)
    watched.sources.run("hr-share", "schedule")
    history = watched.sources.history("hr-share")
    assert [(r["trigger"], r["state"]) for r in history] == [("schedule", "done"), ("manual", "done")]
    [row] = watched.sources.describe()
    assert row["last_run"]["id"] == history[0]["id"] and row["documents"] == 2
    assert not row["running"]
    with pytest.raises(NotFound, match="known: hr-share"):
        watched.sources.run("nope")


def test_a_run_cut_off_by_a_stop_is_marked_failed_at_the_next_start(kb_settings, embedder, share):
    kb_settings.knowledge.sources = [SourceSettings(name="hr-share", path=str(share))]
    base = KnowledgeBase.open(kb_settings, embedder=embedder)
    base.sources.begin("hr-share", "schedule")  # the process ends here
    base.close()
    base = KnowledgeBase.open(kb_settings, embedder=embedder)
    try:
        assert base.sources.abandon_interrupted() == 1
        [run] = base.sources.history("hr-share")
        assert run["state"] == "failed" and "stopped during this run" in run["message"]
    finally:
        base.close()


def test_sources_settings_are_checked(tmp_path):
    config = tmp_path / "appliance.toml"
    config.write_text('[[knowledge.sources]]\nname = "s"\npath = "/srv/share"\ncron = "every day"\n')
    with pytest.raises(ConfigError, match="not a crontab"):
        load_settings(config)
    config.write_text('[[knowledge.sources]]\nname = "s"\npath = "/a"\n'
                      '[[knowledge.sources]]\nname = "s"\npath = "/b"\n')
    with pytest.raises(ConfigError, match="unique; repeated: s"):
        load_settings(config)
    config.write_text('[[knowledge.sources]]\nname = "hr share"\npath = "/a"\ngroups = ["hr"]\n')
    with pytest.raises(ConfigError, match="knowledge.sources.0.name"):
        load_settings(config)

"""The UI's files: both languages have every string the pages use; nothing loads from elsewhere."""

from __future__ import annotations

import json
import re
import zipfile

import pytest

from appliance.server.ui import ASSETS_DIR, UI_DIR, assets_build

JS = ASSETS_DIR / "js"
DYNAMIC_KEYS = {  # built as t(`prefix.${value}`) from values the server sends
    "chat.feedback": ["up", "down"],
    "documents.status": ["added", "updated", "unchanged", "failed"],
    "documents.rechunk": ["running", "failed", "cancelled"],
    "models.states": ["staged", "validating", "ready", "activating", "active", "failed", "retired"],
    "models.activationSteps": ["queued", "starting", "golden_reference", "reembed", "load", "warmup",
                               "switch", "drain"],
    "models.reembedStates": ["building", "ready", "installed", "failed", "cancelled"],
    "models.modes": ["extractive", "generative"],
    "models.lang": ["ko", "en"],
    "monitoring.ranges": ["1h", "24h", "7d"],
    "monitoring.state": ["firing", "resolved"],
    "role": ["employee", "admin"],
    "users.directoryState": ["not_found", "disabled", "not_mapped"],
    "directory.transport": ["ldaps", "starttls", "plain"],
    "directory.method": ["auto", "in_chain", "recursive", "direct"],
    "sources.states": ["running", "done", "failed"],
    "sources.triggers": ["schedule", "manual", "cli"],
    "sources.counts": ["added", "updated", "unchanged", "removed", "skipped", "failed"],
}


def dictionary(language: str) -> dict[str, str]:
    text = (JS / "i18n" / f"{language}.js").read_text(encoding="utf-8")
    return json.loads(text.strip().removeprefix("export default").strip().removesuffix(";"))


def used_keys() -> set[str]:
    keys: set[str] = set()
    for path in [*JS.rglob("*.js"), *UI_DIR.glob("*.html")]:
        text = path.read_text(encoding="utf-8")
        keys |= set(re.findall(r'\bt\("([\w.]+)"', text))
        keys |= set(re.findall(r'data-i18n(?:-[a-z-]+)?="([\w.]+)"', text))
        keys |= set(re.findall(r'\btitle: "([a-z]+\.[\w.]+)"', text))
        keys |= set(re.findall(r'"(chat\.(?:interrupted|stopped|notFound))"', text))
    for prefix, values in DYNAMIC_KEYS.items():
        keys |= {f"{prefix}.{value}" for value in values}
    return keys


def test_korean_and_english_have_the_same_strings():
    english, korean = dictionary("en"), dictionary("ko")
    assert set(english) == set(korean), set(english) ^ set(korean)
    for key, text in english.items():
        placeholders = sorted(re.findall(r"\{\w+\}", text))
        assert placeholders == sorted(re.findall(r"\{\w+\}", korean[key])), key
        assert korean[key].strip() and text.strip(), key


def test_every_string_the_pages_use_exists():
    missing = used_keys() - set(dictionary("en"))
    assert not missing, f"strings used but not in the dictionaries: {sorted(missing)}"


def test_no_file_refers_to_another_origin():
    # The appliance runs offline: no CDN, web font or script from elsewhere, ever.
    outside = re.compile(r"""(?:src|href)\s*=\s*["'](?:https?:)?//|@import"""
                         r"""|url\(\s*["']?(?:https?:)?//|fetch\(\s*["']https?://""")
    for path in [*ASSETS_DIR.rglob("*"), *UI_DIR.glob("*.html")]:
        if path.is_file() and path.suffix in {".html", ".js", ".css"}:
            text = path.read_text(encoding="utf-8")
            assert not outside.search(text), f"{path} refers to another origin"


def test_pages_have_no_inline_script_or_style():
    # The Content-Security-Policy forbids them; the pages would break rather than run them.
    for page in UI_DIR.glob("*.html"):
        text = page.read_text(encoding="utf-8")
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", text), page
        assert "<style" not in text and " style=" not in text, page
        assert not re.search(r"\son[a-z]+=", text), page  # no inline event handlers


def test_build_id_changes_with_any_asset(tmp_path):
    (tmp_path / "a.js").write_text("one")
    first = assets_build(tmp_path)
    assert assets_build(tmp_path) == first
    (tmp_path / "a.js").write_text("two")
    assert assets_build(tmp_path) != first


@pytest.mark.slow
def test_the_appliance_wheel_carries_the_ui(tmp_path):
    # The same wheel the offline bundle ships: built from a copy of the source, as the bundle does.
    from installer.bundle import REPO_ROOT, _appliance_wheel

    wheel = _appliance_wheel(REPO_ROOT, None, tmp_path, tmp_path / "pip.log")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    shipped = {f"appliance/{p.relative_to(UI_DIR.parent).as_posix()}"
               for p in UI_DIR.rglob("*") if p.is_file()}
    assert shipped and shipped <= names, sorted(shipped - names)

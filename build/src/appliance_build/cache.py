"""Stage outputs cached by content hash: `<cache>/<stage>/<key>/`, complete once `stage.json` exists."""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SUMMARY = "stage.json"


def fingerprint(value: Any) -> str:
    """A stable sha256 of any JSON-able value."""
    blob = json.dumps(value, sort_keys=True, ensure_ascii=False, default=str).encode()
    return hashlib.sha256(blob).hexdigest()


def file_fingerprint(paths: list[Path]) -> str:
    """sha256 over the names and bytes of `paths` (missing files count as missing, not as errors)."""
    digest = hashlib.sha256()
    for path in sorted(paths):
        digest.update(str(path).encode())
        if path.is_file():
            digest.update(hashlib.sha256(path.read_bytes()).digest())
        else:
            digest.update(b"<missing>")
    return digest.hexdigest()


@dataclass
class StageOutput:
    stage: str
    key: str
    path: Path
    summary: dict[str, Any]
    cached: bool = False


class StageCache:
    def __init__(self, root: Path):
        self.root = root

    def folder(self, stage: str, key: str) -> Path:
        return self.root / stage / key[:16]

    def get(self, stage: str, key: str) -> StageOutput | None:
        folder = self.folder(stage, key)
        summary = folder / SUMMARY
        if not summary.is_file():
            return None
        return StageOutput(stage, key, folder, json.loads(summary.read_text(encoding="utf-8")), cached=True)

    def begin(self, stage: str, key: str) -> Path:
        """A fresh work folder; a crashed earlier attempt's partial output is kept only as checkpoints."""
        work = self.folder(stage, key).with_suffix(".partial")
        work.mkdir(parents=True, exist_ok=True)
        return work

    def commit(self, stage: str, key: str, work: Path, summary: dict[str, Any]) -> StageOutput:
        final = self.folder(stage, key)
        # Paths inside the summary were written while the stage ran in its work folder.
        text = json.dumps(summary, indent=2, ensure_ascii=False, default=str).replace(str(work), str(final))
        summary = json.loads(text)
        (work / SUMMARY).write_text(text, encoding="utf-8")
        if final.exists():
            shutil.rmtree(final)
        work.rename(final)
        return StageOutput(stage, key, final, summary)

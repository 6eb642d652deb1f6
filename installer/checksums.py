"""SHA256SUMS over every file of a bundle, in the format `sha256sum -c` reads."""

from __future__ import annotations

import hashlib
from pathlib import Path

from installer.errors import IntegrityError

SUMS_FILE = "SHA256SUMS"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _files(root: Path) -> list[str]:
    return sorted(
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if (p.is_file() or p.is_symlink()) and p.relative_to(root).as_posix() != SUMS_FILE
    )


def write_sums(root: Path) -> Path:
    """Write root/SHA256SUMS listing every other file under root."""
    for rel in _files(root):
        if (root / rel).is_symlink():
            raise IntegrityError(f"{rel} is a symlink; a bundle holds plain files only.")
    lines = [f"{sha256_file(root / rel)}  {rel}\n" for rel in _files(root)]
    target = root / SUMS_FILE
    target.write_text("".join(lines), encoding="utf-8")
    return target


def verify_sums(root: Path) -> int:
    """Check every file against SHA256SUMS; refuse changed, missing or unlisted files. Returns the count."""
    sums = root / SUMS_FILE
    if not sums.is_file():
        raise IntegrityError(f"{root} has no {SUMS_FILE}; it is not a complete bundle. Copy the whole archive again.")
    expected: dict[str, str] = {}
    for number, line in enumerate(sums.read_text(encoding="utf-8").splitlines(), 1):
        digest, sep, rel = line.partition("  ")
        if not sep or len(digest) != 64 or rel.startswith("/") or ".." in Path(rel).parts:
            raise IntegrityError(f"{sums} line {number} is malformed; the bundle is damaged. Copy it again.")
        expected[rel] = digest
    problems = []
    for rel, digest in expected.items():
        path = root / rel
        if path.is_symlink() or not path.is_file():
            problems.append(f"missing: {rel}")
        elif sha256_file(path) != digest:
            problems.append(f"changed: {rel}")
    problems += [f"not listed: {rel}" for rel in _files(root) if rel not in expected]
    if problems:
        shown = "\n  ".join(problems[:20])
        raise IntegrityError(
            f"Bundle {root} failed its checksum check; nothing was installed.\n  {shown}\n"
            "Copy the archive again and check it with `sha256sum -c <archive>.sha256`."
        )
    return len(expected)


def verify_archive(archive: Path) -> str:
    """Check an archive against the `<archive>.sha256` file written beside it; returns the digest."""
    sidecar = archive.with_name(archive.name + ".sha256")
    if not sidecar.is_file():
        raise IntegrityError(
            f"{sidecar} is missing; copy it together with the archive (it holds the archive's checksum)."
        )
    want = sidecar.read_text(encoding="utf-8").split()[0].lower()
    got = sha256_file(archive)
    if got != want:
        raise IntegrityError(
            f"Archive {archive} does not match {sidecar.name} (sha256 {got}, expected {want}); "
            "it was damaged in transfer. Nothing was installed; copy it again."
        )
    return got

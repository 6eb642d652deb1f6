"""The air-gapped life cycle: build, refuse damaged bundles, install offline, answer, upgrade, roll back, uninstall.

The tests share one installation and run in file order, like an administrator's sessions.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from installer import llama_wheel
from installer.bundle import FORBIDDEN_WHEELS, REPO_ROOT, read_project
from installer.checksums import sha256_file
from installer.layout import Layout

from .conftest import (
    LLAMA,
    MARKER_FILE,
    installer_cli,
    netns_problem,
    offline,
    portable_variants,
    unpack,
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(900),
    pytest.mark.skipif(netns_problem() is not None, reason=str(netns_problem())),
]

MARKER = "knowledge base and users live here\n"
EDITED_SETTING = "\n[cache]\nttl_seconds = 1234.0\n"


@pytest.fixture(scope="module")
def prefix(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("server")


@pytest.fixture(scope="module")
def layout(prefix) -> Layout:
    return Layout(prefix)


def _flip_byte(path: Path, offset: int) -> None:
    with path.open("r+b") as fh:
        fh.seek(offset)
        byte = fh.read(1)
        fh.seek(offset)
        fh.write(bytes([byte[0] ^ 0x01]))


def test_bundle_holds_everything_and_no_torch(bundle_v1, unpacked_v1):
    assert bundle_v1.archive.name.endswith("-linux_x86_64.tar.gz")
    sidecar = bundle_v1.archive.with_name(bundle_v1.archive.name + ".sha256")
    assert sidecar.read_text().split() == [sha256_file(bundle_v1.archive), bundle_v1.archive.name]
    for item in ("wheels", "config/appliance.toml", "systemd/erp-appliance.service", "install.sh",
                 "upgrade", "uninstall", "SHA256SUMS", "bundle.json", "installer/__main__.py"):
        assert (unpacked_v1 / item).exists(), item
    wheels = [p.name.lower() for p in (unpacked_v1 / "wheels").iterdir()]
    assert not [w for w in wheels if FORBIDDEN_WHEELS.match(w)]
    meta = json.loads((unpacked_v1 / "bundle.json").read_text())
    (appliance,) = (unpacked_v1 / "wheels").glob(f"erp_appliance-{meta['version']}-*.whl")
    with zipfile.ZipFile(appliance) as whl:
        assert {"appliance/ui/chat.html", "appliance/ui/assets/js/chat.js"} <= set(whl.namelist())
    (llama,) = (unpacked_v1 / "wheels").glob("llama_cpp_python-*.whl")
    assert meta["llama_cpp_build"].startswith(LLAMA)
    if LLAMA == "local":  # the build this environment runs ships unchanged
        pinned = llama_wheel.pinned_version(read_project(REPO_ROOT)["dependencies"])
        assert sha256_file(llama) == sha256_file(llama_wheel.local_wheel(pinned))
    else:
        assert portable_variants(llama)
    unit = (unpacked_v1 / "systemd" / "erp-appliance.service").read_text()
    for line in ("NoNewPrivileges=yes", "ProtectSystem=strict", "ProtectHome=yes", "PrivateTmp=yes",
                 "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6", "Restart=on-failure",
                 "ReadWritePaths=/var/lib/erp-appliance", "User=erp-appliance"):
        assert line in unit


def test_changed_byte_inside_bundle_is_refused(unpacked_v1, tmp_path):
    damaged = tmp_path / "bundle"
    shutil.copytree(unpacked_v1, damaged)
    wheel = next((damaged / "wheels").glob("litestar-*.whl"))
    _flip_byte(wheel, wheel.stat().st_size // 2)
    target = tmp_path / "root"
    result = subprocess.run([str(damaged / "install.sh"), "--prefix", str(target), "--no-user"],
                            capture_output=True, text=True, env={**os.environ, "PYTHON": sys.executable})
    assert result.returncode != 0
    assert "failed its checksum check" in result.stderr and f"changed: wheels/{wheel.name}" in result.stderr
    assert not target.exists(), "nothing may be created before the checksums pass"


def test_changed_byte_in_archive_is_refused(bundle_v1, unpacked_v1, tmp_path):
    archive = tmp_path / bundle_v1.archive.name
    shutil.copy2(bundle_v1.archive, archive)
    shutil.copy2(bundle_v1.archive.with_name(archive.name + ".sha256"), tmp_path)
    _flip_byte(archive, archive.stat().st_size // 3)
    target = tmp_path / "root"
    result = subprocess.run([*installer_cli(unpacked_v1), "install", "--bundle", str(archive),
                             "--prefix", str(target), "--no-user"], capture_output=True, text=True)
    assert result.returncode != 0
    assert "does not match" in result.stderr and "Nothing was installed" in result.stderr
    assert not target.exists()
    check = subprocess.run(["sha256sum", "-c", archive.name + ".sha256"], cwd=tmp_path, capture_output=True)
    assert check.returncode != 0  # the documented manual check agrees


def test_install_offline_then_answer(bundle_v1, unpacked_v1, prefix, layout):
    # The proof is only as good as the namespace: reaching PyPI from inside it must fail.
    probe = offline(sys.executable, "-c",
                    "import socket; socket.create_connection(('pypi.org', 443), timeout=5)")
    assert probe.returncode != 0
    result = offline(unpacked_v1 / "install.sh", "--prefix", prefix, "--no-user", "--memory-max", "6G")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Self-test passed" in result.stdout
    assert layout.read_state()["version"] == bundle_v1.version
    assert layout.current.resolve() == layout.version_dir(bundle_v1.version)
    unit = layout.unit.read_text()
    assert "MemoryMax=6G" in unit and f"ReadWritePaths={layout.data}" in unit
    assert f"data_dir = \"{layout.data}\"" in layout.config.read_text()

    # The installer's self-test ran the unit's ExecStart offline and got a grounded answer.
    assert "Installed the knowledge-base embedder" in result.stdout
    assert "answer: '" in result.stdout and "answer: ''" not in result.stdout
    assert "(with sources)" in result.stdout


_ASK_SCRIPT = """
import json, sys
from pathlib import Path
sys.path.insert(0, sys.argv[3])
from installer import selftest, service
command = service.service_command(Path(sys.argv[1]).read_text())
result = selftest.run(command, python=Path(sys.argv[2]), timeout=300, log=lambda _: None,
                      require_grounded=True)
print(json.dumps({"answer": result.answer}))
"""


def env_repo_root() -> str:
    return str(Path(__file__).resolve().parents[2])


def _write_user_state(layout: Layout) -> tuple[bytes, bytes]:
    (layout.data / MARKER_FILE).write_text(MARKER)
    with layout.config.open("a") as fh:
        fh.write(EDITED_SETTING)
    return (layout.data / MARKER_FILE).read_bytes(), layout.config.read_bytes()


def _self_test_failed_after(stderr: str) -> float:
    return float(re.search(r"Self-test failed after ([\d.]+) s", stderr).group(1))


def test_upgrade_keeps_data_and_settings(bundle_v1, bundle_v2, prefix, layout, tmp_path):
    marker, config = _write_user_state(layout)
    bundle = unpack(bundle_v2.archive, tmp_path / "bundle")
    scratch_parent = tmp_path / "tmp"
    scratch_parent.mkdir()
    # The options install takes; --no-user with the installed user is what it is already.
    result = offline(bundle / "upgrade", "--prefix", prefix, "--no-user", env={"TMPDIR": str(scratch_parent)})
    assert result.returncode == 0, result.stdout + result.stderr
    # Checked first beside the installed version, on a scratch data folder, then on the real one.
    assert f"with the data folder {scratch_parent}" in result.stdout
    assert "Ready on the data folder" in result.stdout
    assert not any(scratch_parent.iterdir()), "the scratch data folder is removed"
    state = layout.read_state()
    assert (state["version"], state["previous"]) == (bundle_v2.version, bundle_v1.version)
    assert state["history"][-1]["action"] == "upgrade"
    assert layout.current.resolve() == layout.version_dir(bundle_v2.version)
    assert layout.version_dir(bundle_v1.version).is_dir(), "the previous version stays for a manual rollback"
    assert (layout.data / MARKER_FILE).read_bytes() == marker
    assert layout.config.read_bytes() == config
    assert "MemoryMax=6G" in layout.unit.read_text(), "an upgrade keeps the chosen memory limit"


def test_upgrade_whose_ready_answers_500_is_refused_at_once(bundle_v2, bundle_ready_500, prefix, layout, tmp_path):
    marker, config = (layout.data / MARKER_FILE).read_bytes(), layout.config.read_bytes()
    unit_before = layout.unit.read_text()
    bundle = unpack(bundle_ready_500.archive, tmp_path)
    result = offline(bundle / "upgrade", "--prefix", prefix, "--self-test-timeout", "600")
    assert result.returncode != 0
    assert (f"Upgrade to {bundle_ready_500.version} refused: its self-test failed, so nothing was "
            f"switched and {bundle_v2.version} kept serving") in result.stderr
    assert "GET /ready answered HTTP 500" in result.stderr, "the reason is shown"
    # An error is not a slow start: the self-test gives up at the first answer, not at its timeout.
    assert _self_test_failed_after(result.stderr) < 60
    state = layout.read_state()
    assert state["version"] == bundle_v2.version and state["history"][-1]["action"] == "refused"
    assert layout.current.resolve() == layout.version_dir(bundle_v2.version)
    assert not layout.version_dir(bundle_ready_500.version).exists()
    assert layout.unit.read_text() == unit_before
    assert (layout.data / MARKER_FILE).read_bytes() == marker and layout.config.read_bytes() == config


def test_upgrade_that_fails_on_the_data_is_rolled_back(bundle_v2, bundle_fails_on_data, prefix, layout,
                                                       tmp_path):
    unit_before = layout.unit.read_text()
    bundle = unpack(bundle_fails_on_data.archive, tmp_path)
    result = offline(bundle / "upgrade", "--prefix", prefix)
    assert result.returncode != 0
    assert "Self-test passed" in result.stdout, "it passed beside the installed version"
    assert (f"Upgrade to {bundle_fails_on_data.version} failed on the data folder, so "
            f"{bundle_v2.version} was put back") in result.stderr
    assert "deliberately fails on data it served before" in result.stderr, "the reason is shown"
    assert _self_test_failed_after(result.stderr) < 60, "an exited server is noticed at once"
    state = layout.read_state()
    assert state["version"] == bundle_v2.version and state["history"][-1]["action"] == "rollback"
    assert layout.current.resolve() == layout.version_dir(bundle_v2.version)
    assert not layout.version_dir(bundle_fails_on_data.version).exists()
    assert layout.unit.read_text() == unit_before
    # The restored version serves again: start exactly what the unit's ExecStart runs, offline.
    answer = offline(sys.executable, "-c", _ASK_SCRIPT, layout.unit, layout.current / "venv/bin/python",
                     env_repo_root())
    assert answer.returncode == 0, answer.stdout + answer.stderr
    assert json.loads(answer.stdout.splitlines()[-1])["answer"].strip()


def test_uninstall_keeps_data_unless_purged(prefix, layout):
    cli = installer_cli(layout.current)
    keep = subprocess.run([*cli, "uninstall", "--prefix", str(prefix)], capture_output=True, text=True)
    assert keep.returncode == 0, keep.stderr
    assert not layout.opt.exists() and not layout.unit.exists()
    assert (layout.data / MARKER_FILE).read_text() == MARKER and layout.config.is_file()

    cli = installer_cli(Path(env_repo_root()))
    purge = subprocess.run([*cli, "uninstall", "--prefix", str(prefix), "--purge-data"],
                           capture_output=True, text=True)
    assert purge.returncode == 0, purge.stderr
    assert not layout.data.exists() and not layout.etc.exists()

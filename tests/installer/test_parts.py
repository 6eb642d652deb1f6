"""The installer's parts on small inputs: checksums, unit rendering, the service command line, guards."""

from __future__ import annotations

import importlib.metadata
import zipfile
from pathlib import Path

import pytest

from installer import bundle, llama_wheel, service
from installer.checksums import verify_sums, write_sums
from installer.errors import BundleError, IntegrityError
from installer.layout import Layout

from .conftest import PORTABLE_LLAMA, portable_variants

TEMPLATE = (Path(bundle.TEMPLATES) / "erp-appliance.service").read_text()


@pytest.fixture
def tree(tmp_path) -> Path:
    (tmp_path / "wheels").mkdir()
    (tmp_path / "wheels" / "a-1-py3-none-any.whl").write_bytes(b"wheel bytes")
    (tmp_path / "install.sh").write_text("#!/bin/sh\n")
    write_sums(tmp_path)
    return tmp_path


def test_checksums_accept_an_intact_tree(tree):
    assert verify_sums(tree) == 2


@pytest.mark.parametrize("damage, problem", [
    (lambda t: (t / "install.sh").write_text("#!/bin/sh\nrm -rf /\n"), "changed: install.sh"),
    (lambda t: (t / "wheels" / "a-1-py3-none-any.whl").unlink(), "missing: wheels/a-1-py3-none-any.whl"),
    (lambda t: (t / "wheels" / "evil-1-py3-none-any.whl").write_bytes(b"x"), "not listed: wheels/evil"),
])
def test_checksums_refuse_changed_missing_and_extra_files(tree, damage, problem):
    damage(tree)
    with pytest.raises(IntegrityError, match=problem):
        verify_sums(tree)


def test_unit_is_rendered_for_a_prefix_and_parsed_back(tmp_path):
    layout = Layout(tmp_path)
    unit = service.render_unit(TEMPLATE, layout, user="svc", memory_max="3G")
    command = service.service_command(unit)
    assert command.argv == [str(layout.current / "venv/bin/appliance"), "serve", "--config", str(layout.config)]
    assert command.user == "svc" and command.working_directory == str(layout.data)
    assert command.environment["HF_HUB_OFFLINE"] == "1"
    assert service.unit_value(unit, "MemoryMax") == "3G"
    assert service.unit_value(unit, "ReadWritePaths") == str(layout.data)
    assert "=/var/lib/erp-appliance" not in unit and "=/opt/erp-appliance" not in unit


def test_memory_max_must_be_a_size(tmp_path):
    with pytest.raises(ValueError, match="8G"):
        service.render_unit(TEMPLATE, Layout(tmp_path), memory_max="lots")


def test_torch_in_the_wheelhouse_fails_the_build(tmp_path):
    (tmp_path / "torch-2.13.0-cp311-cp311-linux_x86_64.whl").write_bytes(b"")
    (tmp_path / "nvidia_cublas_cu12-12.1-py3-none-any.whl").write_bytes(b"")
    (tmp_path / "nvidia_ml_py-13.615.71-py3-none-any.whl").write_bytes(b"")  # NVML binding: allowed
    with pytest.raises(BundleError, match="nvidia_cublas.*torch-2.13.0"):
        bundle._check_no_torch(tmp_path)


def test_llama_version_must_be_pinned():
    assert llama_wheel.pinned_version(["rich>=13", "llama-cpp-python==0.3.36"]) == "0.3.36"
    with pytest.raises(BundleError, match="pin llama-cpp-python exactly"):
        llama_wheel.pinned_version(["llama-cpp-python>=0.3"])


def test_unknown_model_lists_what_exists(tmp_path):
    (tmp_path / "erp-assistant" / "1.0.0").mkdir(parents=True)
    (tmp_path / "erp-assistant" / "1.0.0" / "manifest.json").write_text("{}")
    with pytest.raises(BundleError, match="Available in .*: erp-assistant/1.0.0"):
        bundle._copy_models(tmp_path, ["erp-assistant/2.0.0"], tmp_path / "out")
    shipped = bundle._copy_models(tmp_path, ["erp-assistant/1.0.0"], tmp_path / "out")
    assert shipped == [{"name": "erp-assistant", "version": "1.0.0"}]
    assert (tmp_path / "out" / "erp-assistant" / "1.0.0" / "manifest.json").is_file()


PINNED_LLAMA = llama_wheel.pinned_version(bundle.read_project(bundle.REPO_ROOT)["dependencies"])


def _package_hashes(wheel: Path) -> dict[str, str]:
    with zipfile.ZipFile(wheel) as whl:
        record = next(n for n in whl.namelist() if n.endswith(".dist-info/RECORD"))
        return llama_wheel._hashes(whl.read(record).decode())


def _installed_hashes() -> dict[str, str]:
    return llama_wheel._hashes(importlib.metadata.distribution("llama-cpp-python").read_text("RECORD"))


def test_local_llama_wheel_is_the_build_this_environment_runs():
    wheel = llama_wheel.local_wheel(PINNED_LLAMA)
    assert wheel.name.startswith(f"llama_cpp_python-{PINNED_LLAMA}-")
    assert _package_hashes(wheel) == _installed_hashes()


def test_local_llama_wheel_without_pip_cache_is_packed_from_the_installed_files(tmp_path, monkeypatch):
    monkeypatch.setenv("PIP_NO_CACHE_DIR", "1")  # pip's cache off: nothing cached to reuse
    monkeypatch.setenv("ERP_INSTALLER_CACHE", str(tmp_path))
    wheel = llama_wheel.local_wheel(PINNED_LLAMA, log=lambda _: None)
    assert wheel.is_relative_to(tmp_path)
    assert _package_hashes(wheel) == _installed_hashes()
    assert llama_wheel.local_wheel(PINNED_LLAMA, log=lambda _: None) == wheel, "packed once, then reused"


def test_llama_wheel_choice_is_portable_local_or_a_file(tmp_path):
    with pytest.raises(BundleError, match="use portable, local, or a llama_cpp_python"):
        llama_wheel.choose(tmp_path / "nope.whl", PINNED_LLAMA)


@pytest.mark.slow
@pytest.mark.timeout(4 * 3600)
@pytest.mark.skipif(not PORTABLE_LLAMA, reason="compiles the portable llama.cpp wheel (every CPU variant, "
                    "20-50 minutes on 2 cores); set ERP_TEST_PORTABLE_LLAMA=1 to build and check it")
def test_portable_llama_wheel_has_a_backend_per_cpu_level():
    wheel, how = llama_wheel.choose("portable", PINNED_LLAMA, log=lambda _: None)
    assert how.startswith("portable") and portable_variants(wheel)


@pytest.mark.parametrize("server, env, url", [
    ("", "", "http://127.0.0.1:8080"),
    ('[server]\nhost = "0.0.0.0"\nport = 9000\n', "", "http://127.0.0.1:9000"),
    ('[server]\nhost = "::"\nport = 9000\n', "", "http://[::1]:9000"),
    ('[server]\nhost = "10.0.0.5"\nport = 9000\n', "APPLIANCE_SERVER__PORT=9100", "http://10.0.0.5:9100"),
])
def test_upgrade_finds_the_service_where_its_settings_say(tmp_path, server, env, url):
    layout = Layout(tmp_path)
    layout.etc.mkdir(parents=True)
    layout.config.write_text(f'data_dir = "{layout.data}"\n{server}')
    unit = service.render_unit(TEMPLATE, layout)
    if env:
        unit = unit.replace("Environment=PYTHONUNBUFFERED=1", f"Environment=PYTHONUNBUFFERED=1 {env}")
    layout.unit.parent.mkdir(parents=True)
    layout.unit.write_text(unit)
    assert service.local_url(layout) == url

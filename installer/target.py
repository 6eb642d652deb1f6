"""Install, upgrade and uninstall on the target server, from a verified bundle and nothing else."""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
import time
from pathlib import Path

from installer import selftest, service
from installer.checksums import verify_archive, verify_sums
from installer.errors import InstallerError, IntegrityError, SelfTestError
from installer.layout import SERVICE_USER, Layout

BUNDLE_META = "bundle.json"


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


@contextlib.contextmanager
def open_bundle(path: Path, *, log=print):
    """Yield (bundle folder, bundle.json) after every checksum matched; refuse anything else."""
    path = path.resolve()
    with contextlib.ExitStack() as stack:
        if path.is_file():
            log(f"Checking {path.name} against {path.name}.sha256 ...")
            verify_archive(path)
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="erp-bundle-")))
            path = _unpack(path, tmp)
        elif not path.is_dir():
            raise InstallerError(f"{path} is neither a bundle folder nor a bundle archive.")
        count = verify_sums(path)
        log(f"Checked {count} files against SHA256SUMS: all match.")
        meta = json.loads((path / BUNDLE_META).read_text(encoding="utf-8"))
        _check_python(meta)
        yield path, meta


def _unpack(archive: Path, dest: Path) -> Path:
    try:
        with tarfile.open(archive, "r:gz") as tar:
            if hasattr(tarfile, "data_filter"):
                tar.extractall(dest, filter="data")
            else:  # Python 3.11 before 3.11.4: the archive's checksum already matched
                tar.extractall(dest)
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise IntegrityError(f"{archive} cannot be unpacked ({exc}); copy it again.") from exc
    folders = [p for p in dest.iterdir() if p.is_dir()]
    if len(folders) != 1 or not (folders[0] / BUNDLE_META).is_file():
        raise IntegrityError(f"{archive} does not hold one bundle folder with {BUNDLE_META}.")
    return folders[0]


def _check_python(meta: dict) -> None:
    machine = sysconfig.get_platform().replace("-", "_")
    if not meta["platform"].endswith(machine):
        raise InstallerError(f"This bundle is for {meta['platform']}, but this server is {machine}; "
                             "build the bundle on a machine of the same kind.")
    here = f"{sys.version_info.major}.{sys.version_info.minor}"
    if meta["python"] != here:
        raise InstallerError(
            f"This bundle's wheels are built for Python {meta['python']}, but {sys.executable} is "
            f"Python {here}. Run it with PYTHON=/path/to/python{meta['python']}, or build the bundle "
            f"with Python {here}."
        )


def _clean_pip_env() -> dict:
    # Only the bundle's wheels may be used: no index, links or config from the environment.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1",
               PYTHONNOUSERSITE="1")
    return env


def _run(cmd: list[str], what: str) -> None:
    proc = subprocess.run(cmd, env=_clean_pip_env(), capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-20:])
        raise InstallerError(f"{what} failed (exit {proc.returncode}):\n{tail}")


def _install_version(bundle: Path, meta: dict, layout: Layout, *, log=print) -> Path:
    """Put the bundle's version under versions/<version>: a venv from the wheelhouse, models, scripts."""
    vdir = layout.version_dir(meta["version"])
    if vdir.exists():
        shutil.rmtree(vdir)  # a leftover of an earlier attempt that did not finish
    vdir.mkdir(parents=True)
    try:
        log(f"Creating the virtual environment in {vdir / 'venv'} ...")
        _run([sys.executable, "-m", "venv", str(vdir / "venv")], "Creating the virtual environment")
        log("Installing the wheels (offline, from the bundle only) ...")
        _run([str(vdir / "venv" / "bin" / "python"), "-m", "pip", "install", "--no-index",
              "--find-links", str(bundle / "wheels"), "--only-binary", ":all:", "--no-cache-dir",
              "--quiet", str(bundle / "wheels" / meta["appliance_wheel"])], "Installing the wheels")
        for item in ("installer", "config", "systemd", "install.sh", "upgrade", "uninstall", BUNDLE_META):
            src = bundle / item
            (shutil.copytree if src.is_dir() else shutil.copy2)(src, vdir / item)
        for model in meta.get("models", []):
            dest = layout.models / model["name"] / model["version"]
            if not dest.exists():  # a model version never changes once built
                shutil.copytree(bundle / "models" / model["name"] / model["version"], dest)
        if meta.get("embedder"):
            shutil.copytree(bundle / "models" / "embedder", vdir / "embedder")
    except BaseException:
        shutil.rmtree(vdir, ignore_errors=True)
        raise
    return vdir


def _switch_current(layout: Layout, vdir: Path) -> None:
    tmp = layout.current.with_name("current.new")
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(vdir.relative_to(layout.opt))
    os.replace(tmp, layout.current)  # rename(2): the link never points nowhere


def _install_embedder(layout: Layout, vdir: Path, user: str | None, *, log) -> bool:
    """Give the data dir the version's embedder unless it has one (a different embedder means
    re-embedding the knowledge base, which is the model lifecycle's job). True when one is there."""
    target = layout.data / "models" / "embedder"
    shipped = vdir / "embedder"
    if shipped.is_dir() and not (target / "embedder.json").exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(shipped, target, dirs_exist_ok=True)
        if user:
            _chown(layout.data / "models", user)
        log(f"Installed the knowledge-base embedder in {target}.")
    return (target / "embedder.json").exists()


def _self_test(layout: Layout, timeout: float, log, *, grounded: bool = False) -> selftest.SelfTestResult:
    command = service.service_command(layout.unit.read_text(encoding="utf-8"))
    result = selftest.run(command, python=layout.current / "venv" / "bin" / "python", timeout=timeout,
                          log=log, require_grounded=grounded)
    log(f"Self-test passed in {result.seconds:.1f} s; answer: {result.answer[:120]!r}"
        + (" (with sources)" if result.sources_checked else ""))
    return result


def _ensure_user(name: str, home: Path, *, log) -> bool:
    """Create the system user unless it exists; True when this call created it."""
    try:
        pwd.getpwnam(name)
        return False
    except KeyError:
        pass
    if os.geteuid() != 0:
        raise InstallerError(f"Creating the system user {name!r} needs root: run with sudo, or pass "
                             "--no-user to run the service as an existing user (tests, containers).")
    nologin = next((p for p in ("/usr/sbin/nologin", "/sbin/nologin") if Path(p).exists()), "/bin/false")
    subprocess.run(["useradd", "--system", "--user-group", "--home-dir", str(home), "--no-create-home",
                    "--shell", nologin, name], check=True)
    log(f"Created system user {name}.")
    return True


def _chown(path: Path, user: str) -> None:
    if os.geteuid() == 0:
        with contextlib.suppress(KeyError):
            entry = pwd.getpwnam(user)
            os.chown(path, entry.pw_uid, entry.pw_gid)


def install(bundle_path: Path, prefix: Path = Path("/"), *, user: str = SERVICE_USER, create_user: bool = True,
            memory_max: str | None = None, self_test_timeout: float = 600, log=print) -> dict:
    """Fresh install; on a failed self-test the program is removed again and the reason raised."""
    os.umask(0o022)  # the service user must be able to read what root installs
    layout = Layout(prefix.resolve())
    with open_bundle(bundle_path, log=log) as (bundle, meta):
        if (state := layout.read_state()) is not None:
            raise InstallerError(f"Version {state['version']} is already installed under {layout.opt}; "
                                 "use ./upgrade to install another version.")
        user_created = _ensure_user(user, layout.data, log=log) if create_user else False
        if not create_user:
            log(f"Not creating a system user (--no-user); the unit still names User={user}.")
        for folder, mode in ((layout.etc, 0o755), (layout.data, 0o750), (layout.opt, 0o755)):
            folder.mkdir(parents=True, exist_ok=True)
            folder.chmod(mode)
        _chown(layout.data, user)
        vdir = _install_version(bundle, meta, layout, log=log)
        if not layout.config.exists():
            layout.config.write_text(layout.rewrite((bundle / "config" / "appliance.toml").read_text()))
            log(f"Wrote default settings to {layout.config}.")
        else:
            log(f"Keeping the existing settings in {layout.config}.")
        layout.unit.parent.mkdir(parents=True, exist_ok=True)
        template = (bundle / "systemd" / "erp-appliance.service").read_text()
        layout.unit.write_text(service.render_unit(template, layout, user=user, memory_max=memory_max))
        _switch_current(layout, vdir)
        grounded = _install_embedder(layout, vdir, user, log=log)
        try:
            _self_test(layout, self_test_timeout, log, grounded=grounded)
        except SelfTestError:
            layout.unit.unlink(missing_ok=True)
            shutil.rmtree(layout.opt, ignore_errors=True)
            log(f"Removed the program again; settings ({layout.etc}) and data ({layout.data}) were kept.")
            raise
        state = {"name": meta["name"], "version": meta["version"], "previous": None, "user": user,
                 "user_created": user_created, "installed_at": _now(),
                 "history": [{"action": "install", "version": meta["version"], "at": _now()}]}
        layout.write_state(state)
        service.start(layout)
        log(f"Installed {meta['name']} {meta['version']} in {vdir}.")
        # As the service user: files it cannot write would stop the service from opening them.
        log(f"Next, create the first admin (the API and web UI need a user): sudo -u {user} "
            f"{layout.current}/venv/bin/appliance users create-admin --config {layout.config}")
        return state


def upgrade(bundle_path: Path, prefix: Path = Path("/"), *, memory_max: str | None = None,
            self_test_timeout: float = 600, log=print) -> dict:
    """Install side by side, switch, self-test; on failure switch back and raise why."""
    os.umask(0o022)
    layout = Layout(prefix.resolve())
    with open_bundle(bundle_path, log=log) as (bundle, meta):
        state = layout.read_state()
        if state is None:
            raise InstallerError(f"Nothing is installed under {layout.opt}; use ./install.sh first.")
        old_version = state["version"]
        if meta["version"] == old_version:
            raise InstallerError(f"Version {old_version} is already installed; nothing to upgrade.")
        old_vdir = layout.version_dir(old_version)
        old_unit = layout.unit.read_text(encoding="utf-8")
        memory_max = memory_max or service.unit_value(old_unit, "MemoryMax")
        log(f"Upgrading {old_version} -> {meta['version']}; data in {layout.data} and settings in "
            f"{layout.config} stay as they are.")
        vdir = _install_version(bundle, meta, layout, log=log)
        template = (bundle / "systemd" / "erp-appliance.service").read_text()
        service.stop(layout)
        layout.unit.write_text(service.render_unit(template, layout, user=state["user"], memory_max=memory_max))
        _switch_current(layout, vdir)
        grounded = _install_embedder(layout, vdir, state["user"], log=log)
        try:
            _self_test(layout, self_test_timeout, log, grounded=grounded)
        except SelfTestError as exc:
            _switch_current(layout, old_vdir)
            layout.unit.write_text(old_unit)
            service.start(layout)
            shutil.rmtree(vdir, ignore_errors=True)
            state["history"].append({"action": "rollback", "version": meta["version"], "at": _now()})
            layout.write_state(state)
            raise SelfTestError(f"Upgrade to {meta['version']} failed, so {old_version} was put back "
                                f"and is running again.\n{exc}") from exc
        state.update(version=meta["version"], previous=old_version)
        state["history"].append({"action": "upgrade", "version": meta["version"], "at": _now()})
        layout.write_state(state)
        service.start(layout)
        _prune_versions(layout, keep={meta["version"], old_version})
        log(f"Upgraded to {meta['version']}; {old_version} stays in {old_vdir} for a manual rollback.")
        return state


def _prune_versions(layout: Layout, keep: set[str]) -> None:
    for vdir in layout.versions.iterdir():
        if vdir.name not in keep:
            shutil.rmtree(vdir, ignore_errors=True)


def uninstall(prefix: Path = Path("/"), *, purge_data: bool = False, log=print) -> None:
    """Remove program, unit and (if the installer made it) the user; data and settings only with purge."""
    layout = Layout(prefix.resolve())
    state = layout.read_state()
    if state is None and not layout.opt.exists() and not (purge_data and layout.data.exists()):
        raise InstallerError(f"Nothing is installed under {layout.opt}.")
    service.remove(layout)
    shutil.rmtree(layout.opt, ignore_errors=True)
    log(f"Removed the program ({layout.opt}) and the service unit.")
    if state and state.get("user_created") and os.geteuid() == 0:
        subprocess.run(["userdel", state["user"]], check=False)
        log(f"Removed system user {state['user']}.")
    if purge_data:
        shutil.rmtree(layout.data, ignore_errors=True)
        shutil.rmtree(layout.etc, ignore_errors=True)
        log(f"Removed data ({layout.data}) and settings ({layout.etc}).")
    else:
        log(f"Kept data in {layout.data} and settings in {layout.etc}; --purge-data removes them.")

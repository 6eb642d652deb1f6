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
from installer.layout import SERVICE_USER, UNIT_NAME, Layout

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
    """The self-test of the version `current` points at, on the real data folder."""
    command = service.service_command(layout.unit.read_text(encoding="utf-8"))
    result = selftest.run(command, python=layout.current / "venv" / "bin" / "python", timeout=timeout,
                          log=log, require_grounded=grounded)
    _log_passed(result, log)
    return result


def _log_passed(result: selftest.SelfTestResult, log) -> None:
    log(f"Self-test passed in {result.seconds:.1f} s; answer: {result.answer[:120]!r}"
        + (" (with sources)" if result.sources_checked else ""))


def _self_test_beside(layout: Layout, vdir: Path, unit: str, user: str, timeout: float, log, *,
                      grounded: bool) -> selftest.SelfTestResult:
    """The self-test of a version not yet in service: its own program, the real settings, and a
    scratch data folder, so the service keeps serving from the real one meanwhile."""
    command = service.service_command(unit)
    current = str(layout.current)
    command.argv = [str(vdir) + arg[len(current):] if arg.startswith(current + "/") else arg
                    for arg in command.argv]
    with _scratch_data(layout, user) as scratch:
        result = selftest.run(command, python=vdir / "venv" / "bin" / "python", timeout=timeout,
                              log=log, require_grounded=grounded, data_dir=scratch)
    _log_passed(result, log)
    return result


@contextlib.contextmanager
def _scratch_data(layout: Layout, user: str):
    """A fresh data folder for a self-test beside the service. It links the real folder's embedder
    and re-encoded bundled model (caches written once, then only read) instead of copying them."""
    scratch = Path(tempfile.mkdtemp(prefix="erp-appliance-check-"))
    try:
        (scratch / "models").mkdir()
        for name in ("embedder", "bundled"):
            if (layout.data / "models" / name).is_dir():
                (scratch / "models" / name).symlink_to(layout.data / "models" / name)
        for path in (scratch, scratch / "models"):
            _chown(path, user)
        yield scratch
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _switch_service(layout: Layout, vdir: Path, unit: str, timeout: float, log, *, grounded: bool) -> None:
    """Put `vdir` in service with `unit` and start it on the real data: under systemd the service
    stops (drains), then starts on the new version; it is down until /ready answers 200. Without
    systemd nothing serves, so a self-test runs in place. Raise SelfTestError unless it is ready."""
    started = time.monotonic()
    # Stopped before the switch: a running program must not load modules of the next version.
    service.stop(layout)
    layout.unit.write_text(unit)
    _switch_current(layout, vdir)
    if not service.systemd_running(layout):
        result = _self_test(layout, timeout, log, grounded=grounded)
        log(f"Ready on the data folder {result.ready_seconds:.1f} s after its start (no systemd here; "
            "a service would be down for its stop plus this).")
        return
    log("Starting the service on the new version ...")
    service.start(layout)
    try:
        selftest.wait_ready(service.local_url(layout), service.watch_unit(), started + timeout)
    except selftest.NotReady as exc:
        raise SelfTestError(f"The service did not become ready on the new version after "
                            f"{time.monotonic() - started:.1f} s: {exc}") from None
    log(f"The service was down for {time.monotonic() - started:.1f} s (its stop, then the start "
        "until /ready answered 200).")


def _switch_back(layout: Layout, vdir: Path, unit: str, timeout: float, log) -> None:
    """Put the previous version back in service; under systemd, wait until it is ready again."""
    started = time.monotonic()
    service.stop(layout)
    layout.unit.write_text(unit)
    _switch_current(layout, vdir)
    if not service.systemd_running(layout):
        return
    service.start(layout)
    try:
        selftest.wait_ready(service.local_url(layout), service.watch_unit(), started + timeout)
        log(f"The previous version serves again after {time.monotonic() - started:.1f} s.")
    except selftest.NotReady as exc:
        log(f"Warning: the previous version did not become ready either ({exc}); check "
            f"`systemctl status {UNIT_NAME}`.")


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


def install(bundle_path: Path, prefix: Path = Path("/"), *, user: str | None = None, create_user: bool = True,
            memory_max: str | None = None, self_test_timeout: float = 600, log=print) -> dict:
    """Fresh install; on a failed self-test the program is removed again and the reason raised."""
    os.umask(0o022)  # the service user must be able to read what root installs
    layout = Layout(prefix.resolve())
    user = user or SERVICE_USER
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


def upgrade(bundle_path: Path, prefix: Path = Path("/"), *, user: str | None = None, create_user: bool = True,
            memory_max: str | None = None, self_test_timeout: float = 600, log=print) -> dict:
    """Install side by side and self-test on a scratch data folder while the service keeps serving;
    then switch and restart. A failed self-test switches nothing; a new version that does not
    become ready on the real data is replaced by the previous one again. Raise why."""
    os.umask(0o022)
    layout = Layout(prefix.resolve())
    with open_bundle(bundle_path, log=log) as (bundle, meta):
        state = layout.read_state()
        if state is None:
            raise InstallerError(f"Nothing is installed under {layout.opt}; use ./install.sh first.")
        old_version, new_version = state["version"], meta["version"]
        if new_version == old_version:
            raise InstallerError(f"Version {old_version} is already installed; nothing to upgrade.")
        if user not in (None, state["user"]):
            raise InstallerError(f"The service runs as {state['user']}; an upgrade keeps that user. To run "
                                 f"it as {user}, uninstall (data and settings stay) and install with --user.")
        user = state["user"]
        if create_user and state.get("user_created"):
            _ensure_user(user, layout.data, log=log)  # the user it created at install, if since removed
        old_vdir = layout.version_dir(old_version)
        old_unit = layout.unit.read_text(encoding="utf-8")
        memory_max = memory_max or service.unit_value(old_unit, "MemoryMax")
        log(f"Upgrading {old_version} -> {new_version}; data in {layout.data} and settings in "
            f"{layout.config} stay as they are.")
        template = (bundle / "systemd" / "erp-appliance.service").read_text()
        unit = service.render_unit(template, layout, user=user, memory_max=memory_max)
        vdir = _install_version(bundle, meta, layout, log=log)
        grounded = _install_embedder(layout, vdir, user, log=log)
        try:
            _self_test_beside(layout, vdir, unit, user, self_test_timeout, log, grounded=grounded)
        except SelfTestError as exc:
            shutil.rmtree(vdir, ignore_errors=True)
            _record(layout, state, "refused", new_version)
            raise SelfTestError(f"Upgrade to {new_version} refused: its self-test failed, so nothing was "
                                f"switched and {old_version} kept serving.\n{exc}") from exc
        try:
            _switch_service(layout, vdir, unit, self_test_timeout, log, grounded=grounded)
        except SelfTestError as exc:
            _switch_back(layout, old_vdir, old_unit, self_test_timeout, log)
            shutil.rmtree(vdir, ignore_errors=True)
            _record(layout, state, "rollback", new_version)
            raise SelfTestError(f"Upgrade to {new_version} failed on the data folder, so {old_version} "
                                f"was put back.\n{exc}") from exc
        state.update(version=new_version, previous=old_version)
        _record(layout, state, "upgrade", new_version)
        _prune_versions(layout, keep={new_version, old_version})
        log(f"Upgraded to {new_version}; {old_version} stays in {old_vdir} for a manual rollback.")
        return state


def _record(layout: Layout, state: dict, action: str, version: str) -> None:
    state["history"].append({"action": action, "version": version, "at": _now()})
    layout.write_state(state)


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

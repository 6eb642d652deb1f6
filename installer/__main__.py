"""`python -m installer ...` from the repo, or `python3 <bundle>/installer ...` on the target."""

import sys
from pathlib import Path

if sys.version_info < (3, 11):
    sys.exit(f"Error: the installer needs Python 3.11 or newer; {sys.executable} is {sys.version.split()[0]}.")
if not __package__:  # run as a folder: make `installer` importable from its parent
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from installer.cli import main  # noqa: E402

main()

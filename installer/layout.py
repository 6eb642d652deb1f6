"""Where an installation lives; everything hangs off one prefix so tests can install into a temp folder."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

# The paths of a real install; a --prefix puts each of them under that folder instead.
OPT = "/opt/erp-appliance"
ETC = "/etc/erp-appliance"
DATA = "/var/lib/erp-appliance"
UNIT_DIR = "/etc/systemd/system"
UNIT_NAME = "erp-appliance.service"
SERVICE_USER = "erp-appliance"


@dataclass(frozen=True)
class Layout:
    prefix: Path

    def _under(self, path: str) -> Path:
        return self.prefix / path.lstrip("/")

    @property
    def opt(self) -> Path:
        return self._under(OPT)

    @property
    def versions(self) -> Path:
        return self.opt / "versions"

    @property
    def current(self) -> Path:
        return self.opt / "current"

    @property
    def models(self) -> Path:
        return self.opt / "models"

    @property
    def state_file(self) -> Path:
        return self.opt / "installed.json"

    @property
    def etc(self) -> Path:
        return self._under(ETC)

    @property
    def config(self) -> Path:
        return self.etc / "appliance.toml"

    @property
    def data(self) -> Path:
        return self._under(DATA)

    @property
    def unit(self) -> Path:
        return self._under(UNIT_DIR) / UNIT_NAME

    def version_dir(self, version: str) -> Path:
        return self.versions / version

    def rewrite(self, text: str) -> str:
        """Point the real-install paths in a config or unit file at this layout's folders."""
        targets = {OPT: self.opt, ETC: self.etc, DATA: self.data}
        # One pass, so a prefix that itself contains one of these paths is not rewritten twice.
        return re.sub("|".join(map(re.escape, targets)), lambda m: str(targets[m.group(0)]), text)

    def read_state(self) -> dict | None:
        if not self.state_file.is_file():
            return None
        return json.loads(self.state_file.read_text(encoding="utf-8"))

    def write_state(self, state: dict) -> None:
        tmp = self.state_file.with_name(self.state_file.name + ".tmp")
        tmp.write_text(json.dumps(state, indent=2) + "\n", encoding="utf-8")
        tmp.replace(self.state_file)

"""Append-only named schema migrations, one list per database (never edit one that shipped)."""

from __future__ import annotations

import time
from collections.abc import Callable

import sqlite_utils

Step = Callable[[sqlite_utils.Database], None]


class Migrations:
    """Register steps with `@migrations`; `apply(db)` runs the ones not yet recorded, in order,
    each in its own transaction together with its record."""

    def __init__(self, table: str = "_migrations"):
        self.table = table
        self.steps: list[Step] = []

    def __call__(self, step: Step) -> Step:
        self.steps.append(step)
        return step

    @property
    def names(self) -> list[str]:
        return [step.__name__ for step in self.steps]

    def apply(self, db: sqlite_utils.Database) -> list[str]:
        """Apply the pending steps; return their names."""
        db[self.table].create({"name": str, "applied_at": float}, pk="name", if_not_exists=True)
        done = {row["name"] for row in db[self.table].rows}
        applied = []
        for step in self.steps:
            if step.__name__ in done:
                continue
            with db.conn:
                step(db)
                db[self.table].insert({"name": step.__name__, "applied_at": time.time()})
            applied.append(step.__name__)
        return applied

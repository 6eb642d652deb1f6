"""The caller's access groups, read in one place.

Until users and API keys land, a caller names its groups in the `X-Appliance-Groups` header
(comma-separated) or the `groups` extension field of a request body; with neither it gets
`knowledge.default_groups`. The auth issue replaces this function with the groups of the
authenticated key, and nothing else changes.
"""

from __future__ import annotations

from collections.abc import Sequence

from litestar import Request

GROUPS_HEADER = "x-appliance-groups"


def caller_groups(request: Request, body_groups: Sequence[str] | None = None) -> list[str] | None:
    """The caller's groups, or None for the defaults."""
    if body_groups:
        return sorted({g.strip() for g in body_groups if g.strip()})
    header = request.headers.get(GROUPS_HEADER)
    if header:
        return sorted({g.strip() for g in header.split(",") if g.strip()})
    return None

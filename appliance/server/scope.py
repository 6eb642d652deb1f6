"""The caller's access groups, decided in one place.

With auth on they are the groups of the signed-in user or of the API key's owner, whatever the
role: admins manage every document, but read (search, chat sources, passages, cached answers)
only what their groups allow. A caller may narrow its scope to some of its own groups with the
`X-Appliance-Groups` header (comma-separated) or a body's `groups` field; naming a group it is
not in is refused with 403, so a request can never widen what it sees.

With auth off (local development) the header or body field is taken as given, and a caller that
names none gets `knowledge.default_groups`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from litestar import Request

from appliance.errors import PermissionDenied
from appliance.knowledge.store import visible
from appliance.server.auth import Principal, require_principal

GROUPS_HEADER = "x-appliance-groups"


def _named(request: Request, body_groups: Sequence[str] | None) -> list[str] | None:
    if body_groups:
        return sorted({g.strip() for g in body_groups if g.strip()}) or None
    header = request.headers.get(GROUPS_HEADER)
    if header:
        return sorted({g.strip() for g in header.split(",") if g.strip()}) or None
    return None


def caller_groups(request: Request, body_groups: Sequence[str] | None = None) -> list[str] | None:
    """The groups this request may read; None (every document) only for the operator's commands
    on the appliance itself, which read everything unless they name groups."""
    principal = require_principal(request)
    named = _named(request, body_groups)
    if principal.operator:
        return named
    if principal.open:
        return named if named is not None else list(request.app.state.settings.knowledge.default_groups)
    own = sorted(principal.groups)
    if named is None:
        return own
    outside = sorted(set(named) - set(own))
    if outside:
        raise PermissionDenied(
            f"You are not in the group(s) {', '.join(outside)}; your groups are "
            f"{', '.join(own) or 'none'}. Leave out X-Appliance-Groups / `groups`, or ask an admin "
            "to add you to a group.", param="groups")
    return named


def can_list(principal: Principal, document_groups: Iterable[str]) -> bool:
    """Document metadata: admins see every document (they manage them), others their groups'."""
    return principal.is_admin or visible(document_groups, principal.groups)

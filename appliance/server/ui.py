"""The web UI: chat at /, the admin console at /admin, the login page, and their static assets.

Pages are plain HTML with ES modules under /assets/<build>/, where <build> is a hash of the UI's
files: assets are cached for a year and a new release changes every URL, while the pages
themselves are revalidated on each load. Every page carries a strict Content-Security-Policy
(scripts and styles only from this origin, nothing inline), since the pages hold a session.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from litestar import Request, Response, get
from litestar.datastructures import CacheControlHeader
from litestar.response import Redirect
from litestar.router import Router
from litestar.static_files import create_static_files_router

from appliance.server.auth import principal_of

UI_DIR = Path(__file__).resolve().parent.parent / "ui"
ASSETS_DIR = UI_DIR / "assets"
PAGES = ("chat", "admin", "login")

CONTENT_SECURITY_POLICY = "; ".join([
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data: blob:",
    "connect-src 'self'",
    "font-src 'self'",
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
])
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
}
PAGE_HEADERS = {**SECURITY_HEADERS, "Cache-Control": "no-cache"}


def assets_build(directory: Path = ASSETS_DIR) -> str:
    """A short hash of every asset's name and bytes: it changes whenever any asset does."""
    digest = hashlib.sha256()
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        digest.update(path.relative_to(directory).as_posix().encode() + b"\0")
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def render_pages(assets_url: str, directory: Path = UI_DIR) -> dict[str, bytes]:
    return {name: (directory / f"{name}.html").read_text(encoding="utf-8")
            .replace("{{assets}}", assets_url).encode() for name in PAGES}


def _page(body: bytes, status_code: int = 200) -> Response:
    return Response(body, media_type="text/html; charset=utf-8", status_code=status_code,
                    headers=PAGE_HEADERS)


def _login_redirect(request: Request) -> Redirect:
    target = request.url.path
    return Redirect("/login", query_params={"next": target}, headers=PAGE_HEADERS, status_code=303)


def _safe_next(value: str | None) -> str:
    """Only a path on this appliance: an open redirect would let a link send users elsewhere."""
    if value and value.startswith("/") and not value.startswith(("//", "/\\")):
        return value
    return "/"


def ui_router() -> Router:
    """The pages and the assets, as one router the app mounts when server.ui is on."""
    build = assets_build()
    assets_url = f"/assets/{build}"
    pages = render_pages(assets_url)

    @get("/", include_in_schema=False)
    async def chat(request: Request) -> Response:
        if principal_of(request) is None:
            return _login_redirect(request)
        return _page(pages["chat"])

    @get("/admin", include_in_schema=False)
    async def admin(request: Request) -> Response:
        principal = principal_of(request)
        if principal is None:
            return _login_redirect(request)
        # Employees get the same page, which shows them an "admins only" notice; the 403 status
        # tells programs and tests the same. The admin APIs check the role on their own.
        return _page(pages["admin"], 200 if principal.is_admin else 403)

    @get("/login", include_in_schema=False)
    async def login(request: Request) -> Response:
        if principal_of(request) is not None:
            return Redirect(_safe_next(request.query_params.get("next")), headers=PAGE_HEADERS,
                            status_code=303)
        return _page(pages["login"])

    assets = create_static_files_router(
        path=assets_url, directories=[ASSETS_DIR], name="ui_assets",
        cache_control=CacheControlHeader(public=True, max_age=31_536_000, immutable=True),
        after_request=_with_security_headers,
    )
    return Router(path="/", route_handlers=[chat, admin, login, assets])


async def _with_security_headers(response: Response) -> Response:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response

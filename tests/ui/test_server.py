"""How the appliance serves the UI: pages behind the login, strict headers, cacheable assets."""

from __future__ import annotations

import re

import httpx

from appliance.server.ui import CONTENT_SECURITY_POLICY

from .conftest import ADMIN, EMPLOYEE


def signed_in(base_url: str, credentials) -> httpx.Client:
    client = httpx.Client(base_url=base_url, follow_redirects=False, timeout=60)
    body = dict(zip(("username", "password"), credentials))
    client.post("/api/auth/login", json=body).raise_for_status()
    return client


def test_pages_need_a_login_and_carry_a_strict_policy(appliance):
    anonymous = httpx.Client(base_url=appliance.url, follow_redirects=False, timeout=60)
    for path in ("/", "/admin"):
        response = anonymous.get(path)
        assert response.status_code == 303
        assert response.headers["location"] == f"/login?next=%2F{path.strip('/')}"
    page = anonymous.get("/login")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert page.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert "script-src 'self'" in CONTENT_SECURITY_POLICY
    assert "unsafe-inline" not in CONTENT_SECURITY_POLICY
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["cache-control"] == "no-cache"

    admin = signed_in(appliance.url, ADMIN)
    assert admin.get("/").status_code == 200
    assert admin.get("/admin").status_code == 200
    # Already signed in: the login page sends users on, but only to a path of this appliance.
    assert admin.get("/login?next=/admin").headers["location"] == "/admin"
    assert admin.get("/login?next=//evil.example/x").headers["location"] == "/"
    assert admin.get("/login?next=https://evil.example").headers["location"] == "/"

    employee = signed_in(appliance.url, EMPLOYEE)
    assert employee.get("/").status_code == 200
    forbidden = employee.get("/admin")
    assert forbidden.status_code == 403 and 'id="forbidden"' in forbidden.text
    assert employee.get("/api/admin/users").status_code == 403  # the API decides on its own


def test_assets_are_cached_for_good_under_a_build_id(appliance):
    client = httpx.Client(base_url=appliance.url, timeout=60)
    html = client.get("/login").text
    scripts = re.findall(r'src="(/assets/[0-9a-f]{12}/js/login\.js)"', html)
    assert scripts, html
    script = client.get(scripts[0])
    assert script.status_code == 200
    assert script.headers["content-type"].startswith(("text/javascript", "application/javascript"))
    assert "immutable" in script.headers["cache-control"]
    assert "max-age=31536000" in script.headers["cache-control"]
    assert script.headers["x-content-type-options"] == "nosniff"
    # Modules import each other relatively, so they resolve under the same build id.
    module = client.get(scripts[0].replace("login.js", "i18n/ko.js"))
    assert module.status_code == 200 and "로그인" in module.text


def test_the_ui_can_be_switched_off(appliance_factory):
    appliance = appliance_factory(server__ui=False)
    client = signed_in(appliance.url, ADMIN)
    assert client.get("/").status_code == 404
    assert client.get("/login").status_code == 404
    assert client.get("/api/auth/me").status_code == 200  # the API stays


def test_with_auth_off_the_chat_opens_directly(appliance_factory):
    appliance = appliance_factory(auth__enabled=False)
    client = httpx.Client(base_url=appliance.url, follow_redirects=False, timeout=60)
    assert client.get("/").status_code == 200
    assert client.get("/login").headers["location"] == "/"
    assert client.get("/api/auth/me").json()["auth_enabled"] is False

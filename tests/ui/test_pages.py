"""Login, roles, languages, offline loading and the phone-sized layout, in a real Chromium."""

from __future__ import annotations

from urllib.parse import urlsplit

from .conftest import ADMIN, EMPLOYEE, PHONE, eventually, login

ADMIN_TABS = ("documents", "models", "monitoring", "users", "keys", "usage", "audit")


def no_horizontal_scroll(page) -> bool:
    return page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


def test_login_wrong_password_and_logout(appliance, new_page):
    page = new_page()
    page.goto(f"{appliance.url}/")
    assert page.url == f"{appliance.url}/login?next=%2F"
    page.fill("#username", EMPLOYEE[0])
    page.fill("#password", "not-the-password")
    page.click("#login-submit")
    error = page.locator("#login-error")
    error.wait_for()
    assert "Wrong user name or password" in error.inner_text()
    assert page.url.startswith(f"{appliance.url}/login")

    page.fill("#password", EMPLOYEE[1])
    page.click("#login-submit")
    page.wait_for_url(f"{appliance.url}/")
    page.wait_for_selector("#account-button")
    assert "Park Jisoo" in page.inner_text("#account-button")
    assert page.locator("#admin-link").count() == 0  # employees get no way into the console

    page.click("#account-button")
    page.click("#logout")
    page.wait_for_url(f"{appliance.url}/login")
    page.goto(f"{appliance.url}/")
    assert page.url.startswith(f"{appliance.url}/login")  # the session is gone on the server too
    assert not page.errors


def test_employees_get_an_admins_only_page(appliance, new_page):
    page = new_page()
    login(page, appliance.url, EMPLOYEE, "/admin")
    page.wait_for_selector("#forbidden", state="visible")
    assert page.inner_text("#forbidden h1") == "Admins only"
    assert page.locator("#console").is_hidden()
    page.click("#forbidden a")
    page.wait_for_url(f"{appliance.url}/")

    admin = new_page()
    login(admin, appliance.url, ADMIN, "/admin")
    admin.wait_for_selector("#console", state="visible")
    assert admin.locator("#forbidden").is_hidden()
    assert not page.errors and not admin.errors


def test_korean_first_when_the_browser_prefers_it_and_the_switch_is_remembered(appliance, new_page):
    page = new_page(locale="ko-KR")
    page.goto(f"{appliance.url}/login")
    assert page.get_attribute("html", "lang") == "ko"
    assert page.inner_text("#login-submit") == "로그인"
    login(page, appliance.url, EMPLOYEE)
    assert page.inner_text("#welcome h1") == "ERP에 대해 무엇이든 물어보세요"
    assert page.get_attribute("#question", "placeholder") == "ERP에 대해 질문해 보세요…"

    page.click(".lang-switch [data-lang=en]")
    assert page.get_attribute("html", "lang") == "en"
    assert page.inner_text("#welcome h1") == "How can I help with the ERP?"
    first_example = page.inner_text("#examples .example >> nth=0")
    assert first_example.endswith("How do I get a purchase order approved?")
    page.reload()
    page.wait_for_selector("#examples .example")
    assert page.inner_text("#welcome h1") == "How can I help with the ERP?"  # remembered

    english = new_page(locale="en-US")
    english.goto(f"{appliance.url}/login")
    assert english.get_attribute("html", "lang") == "en"
    assert english.inner_text("#login-submit") == "Log in"
    assert not page.errors and not english.errors


def test_pages_load_nothing_from_another_origin(appliance, new_page):
    page = new_page()
    requested: list[str] = []
    blocked: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    page.on("console", lambda message: blocked.append(message.text)
            if "Content Security Policy" in message.text else None)
    login(page, appliance.url, ADMIN)
    page.wait_for_selector("#examples .example")
    for tab in ADMIN_TABS:
        page.goto(f"{appliance.url}/admin#{tab}")
        page.wait_for_selector(f"#tab-{tab}[aria-selected=true]")
        page.wait_for_load_state("networkidle")
    origin = urlsplit(appliance.url)
    assert len(requested) > 20  # pages, modules, stylesheet, icon, API calls
    outside = [url for url in requested if urlsplit(url)[:2] != origin[:2]]
    assert not outside, outside
    assert not blocked, blocked
    assert not page.errors


def test_phone_sized_pages_have_no_horizontal_scroll(appliance, new_page):
    page = new_page(viewport=PHONE)
    page.goto(f"{appliance.url}/login")
    assert no_horizontal_scroll(page)
    login(page, appliance.url, ADMIN)
    page.wait_for_selector("#examples .example")
    assert no_horizontal_scroll(page)
    sidebar = page.locator("#sidebar")
    assert sidebar.evaluate("e => e.getBoundingClientRect().right <= 0")  # tucked away
    page.click("#sidebar-toggle")
    eventually(page, "document.getElementById('sidebar').getBoundingClientRect().left >= 0")
    assert no_horizontal_scroll(page)
    page.click("#scrim", position={"x": PHONE["width"] - 20, "y": 200})  # beside the sidebar
    page.wait_for_selector("#sidebar:not(.open)", state="attached")
    for tab in ADMIN_TABS:
        page.goto(f"{appliance.url}/admin#{tab}")
        page.wait_for_selector(f"#tab-{tab}[aria-selected=true]")
        page.wait_for_load_state("networkidle")
        assert no_horizontal_scroll(page), tab
    assert not page.errors

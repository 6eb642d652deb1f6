"""Directory sign-in in a real Chromium: a directory user signs in at the login page and shows in
the Users tab as a directory user; the tab's directory card says whether the directory answers,
and lists refused sign-ins, in English and in Korean (real slapd, real appliance)."""

from __future__ import annotations

import pytest

from appliance.errors import AuthenticationRequired
from tests.conftest import free_port
from tests.slapd import PEOPLE_ENTRIES, directory_settings

from .conftest import ADMIN, login
from .test_admin import open_tab


def sign_in(page, base_url: str, username: str) -> None:
    page.goto(f"{base_url}/")
    page.wait_for_selector("#login-form")
    page.fill("#username", username)
    page.fill("#password", PEOPLE_ENTRIES[username][0])
    page.click("#login-submit")


def test_directory_users_and_the_directory_card(appliance_factory, new_page, slapd):
    appliance = appliance_factory(auth__directory=directory_settings(slapd))
    bob = new_page()
    sign_in(bob, appliance.url, "bob")
    bob.wait_for_url(f"{appliance.url}/")
    bob.wait_for_selector("#question")
    # carol is in the directory but in no mapped group: refused; the admin sees why.
    carol = new_page()
    sign_in(carol, appliance.url, "carol")
    carol.wait_for_selector("#login-error:not([hidden])")
    assert appliance.user("carol") is None
    # dana signed in once, then left every mapped group: her next sign-in shuts her out.
    dana = slapd.add_person("dana", "dana-password-1", "Dana Choi", groups=("staff",))
    appliance.accounts.login("dana", "dana-password-1")
    slapd.remove_member("staff", dana)
    with pytest.raises(AuthenticationRequired):
        appliance.accounts.login("dana", "dana-password-1")

    admin = new_page()
    login(admin, appliance.url, ADMIN, "/admin")
    open_tab(admin, appliance.url, "users")
    admin.wait_for_selector("#directory-status[data-state=reachable]")
    card = admin.locator(".card", has=admin.locator("#directory-status"))
    assert "Reachable" in card.inner_text() and "LDAPS" in card.inner_text()
    assert "Followed level by level" in card.inner_text()  # OpenLDAP: the recursive method
    errors = admin.inner_text("#directory-errors")
    assert "carol" in errors and "none of the mapped groups" in errors

    row = admin.locator("#users-table tr[data-id='bob']")
    row.wait_for()
    assert row.locator(".badge[data-source=directory]").inner_text() == "Directory"
    assert row.locator("button", has_text="Reset password").count() == 0
    shut_out = admin.locator("#users-table tr[data-id='dana']")
    assert "Shut out by the directory" in shut_out.inner_text()
    assert "In none of the mapped groups" in shut_out.inner_text()
    local = admin.locator("#users-table tr[data-id='jisoo']")
    assert local.locator(".badge[data-source=directory]").count() == 0
    assert local.locator("button", has_text="Reset password").count() == 1

    # Role and groups come from the directory: the edit dialog shows them but does not change them.
    row.locator("button", has_text="Edit").click()
    assert admin.is_disabled("#edit-role") and admin.is_disabled("#edit-groups")
    admin.fill("#edit-display-name", "Bob from Accounting")
    admin.click("#edit-user-dialog button[value=ok]")
    admin.wait_for_selector("#users-table tr[data-id='bob'] :text('Bob from Accounting')")
    assert appliance.user("bob").display_name == "Bob from Accounting"
    assert not bob.errors and not admin.errors


def test_the_directory_card_in_korean_when_the_directory_is_down(appliance_factory, new_page, slapd):
    down = directory_settings(slapd, url=f"ldaps://127.0.0.1:{free_port()}", connect_timeout_seconds=1)
    appliance = appliance_factory(auth__directory=down)
    admin = new_page(locale="ko-KR")
    login(admin, appliance.url, ADMIN, "/admin")  # the local admin signs in all the same
    open_tab(admin, appliance.url, "users")
    admin.wait_for_selector("#directory-status[data-state=unreachable]")
    card = admin.locator(".card", has=admin.locator("#directory-status"))
    assert "디렉터리 로그인" in card.inner_text() and "연결 안 됨" in card.inner_text()
    assert "Could not talk to the directory" in admin.inner_text("#directory-error")
    assert "서버가 시작된 뒤 디렉터리 오류가 없습니다" in admin.inner_text("#directory-errors")
    assert not admin.errors

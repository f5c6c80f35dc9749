"""Issue 12 in the console: the Keys section of a connection (several keys, rotation,
failover shown in the playground, revocation), in Chromium against the `make run` stack."""

from __future__ import annotations

from typing import Any

import pytest

from tests.browser.conftest import Console
from tests.browser.test_console import api_connection, user
from tests.support.fakes import fake_key

pytestmark = pytest.mark.browser


def open_detail(console: Console, me: str, cid: str) -> Any:
    console.open()
    console.sign_in(me)
    console.go(f"#/connections/{cid}")
    page = console.page
    page.get_by_role("table", name="Keys").wait_for()
    return page


def key_names(page: Any) -> list[str]:
    return [str(n) for n in page.locator("#keys tbody tr").evaluate_all(
        "rows => rows.map(r => r.dataset.key)")]


def confirm(page: Any, action: str) -> None:
    page.get_by_role("dialog").get_by_role("button", name=action, exact=True).click()


def test_rotate_a_key_in_the_console_add_test_promote_remove(console: Console, api_as):
    me = user()
    client = api_as(me)
    conn = api_connection(client, console.stack)
    cid, old_key = conn["id"], conn["_key"]
    new_key = fake_key("openai")
    page = open_detail(console, me, cid)
    assert key_names(page) == ["primary"]

    # Add the new key as "next" (the suggested name)
    assert page.get_by_label("Key name").input_value() == "next"
    page.locator("#keys").get_by_label("API key").fill(new_key)
    page.get_by_role("button", name="Add key").click()
    page.locator('#keys tr[data-key="next"]').wait_for()
    assert new_key not in console.everything()
    assert page.locator("#keys").get_by_label("API key").input_value() == ""

    # Test it: the result names the key and shows the four checks
    page.get_by_role("button", name="Test key next").click()
    page.get_by_role("heading", name="Test of key “next”").wait_for()
    assert page.locator("#keys-output [data-result-status]").get_attribute(
        "data-result-status") == "active"

    # Make it primary: first in the table, with the badge; the playground answers with it
    page.get_by_role("button", name="Make key next primary").click()
    page.wait_for_function(
        "() => document.querySelector('#keys tbody tr')?.dataset.key === 'next'")
    assert key_names(page) == ["next", "primary"]
    page.get_by_label("Prompt").fill("Say hi")
    page.get_by_role("button", name="Send").click()
    page.locator("#invoke-output pre").wait_for()
    assert "key next" in page.locator("#invoke-output").inner_text()

    # Remove the old key after confirming
    page.get_by_role("button", name="Remove key primary").click()
    confirm(page, "Remove")
    page.wait_for_function("() => document.querySelectorAll('#keys tbody tr').length === 1")
    assert key_names(page) == ["next"]
    assert [s["name"] for s in client.get(f"/connections/{cid}/credentials").json()["items"]
            ] == ["next"]
    assert old_key not in console.everything() and new_key not in console.everything()


def test_a_failover_shows_which_key_answered(console: Console, api_as):
    me = user()
    client = api_as(me)
    conn = api_connection(client, console.stack, "openai", "429")
    made = client.post(f"/connections/{conn['id']}/credentials",
                       json={"name": "spare", "credentials": {"api_key": fake_key("openai")}})
    assert made.status_code == 201, made.text
    page = open_detail(console, me, conn["id"])
    page.get_by_label("Prompt").fill("Say hi")
    page.get_by_role("button", name="Send").click()
    page.locator("#invoke-output pre").wait_for()
    assert "key spare (after primary)" in page.locator("#invoke-output").inner_text()


def test_revoking_the_only_key_asks_first_then_needs_a_new_key(console: Console, api_as):
    me = user()
    client = api_as(me)
    conn = api_connection(client, console.stack)
    page = open_detail(console, me, conn["id"])
    page.get_by_role("button", name="Revoke key primary").click()
    dialog = page.get_by_role("dialog")
    assert "only key" in dialog.inner_text()
    dialog.get_by_role("button", name="Cancel").click()
    assert client.get(f"/connections/{conn['id']}").json()["needs_credentials"] is False

    page.get_by_role("button", name="Revoke key primary").click()
    confirm(page, "Revoke")
    page.get_by_text("This connection has no key").wait_for()
    assert client.get(f"/connections/{conn['id']}").json()["needs_credentials"] is True
    # A new key brings it back
    page.get_by_label("Key name").fill("fresh")
    page.locator("#keys").get_by_label("API key").fill(fake_key("openai"))
    page.get_by_role("button", name="Add key").click()
    page.locator('#keys tr[data-key="fresh"]').wait_for()


def test_a_bad_key_name_is_shown_at_the_field_and_a_stale_page_offers_a_reload(
        console: Console, api_as):
    me = user()
    client = api_as(me)
    conn = api_connection(client, console.stack)
    page = open_detail(console, me, conn["id"])
    page.get_by_label("Key name").fill("Bad Name")
    page.locator("#keys").get_by_label("API key").fill(fake_key("openai"))
    page.get_by_role("button", name="Add key").click()
    page.wait_for_function(
        "() => document.querySelector('#key-name')?.getAttribute('aria-invalid') === 'true'")
    assert "name" in page.locator("#key-name-error").inner_text()

    # Someone else adds a key meanwhile: this page's version is stale
    other = client.post(f"/connections/{conn['id']}/credentials",
                        json={"name": "other", "credentials": {"api_key": fake_key("openai")}})
    assert other.status_code == 201
    page.get_by_label("Key name").fill("mine")
    page.get_by_role("button", name="Add key").click()
    alert = page.locator("#keys-output").get_by_role("button", name="Reload")
    alert.wait_for()
    assert "changed elsewhere" in page.locator("#keys-output").inner_text()
    alert.click()
    page.locator('#keys tr[data-key="other"]').wait_for()


def test_the_keys_section_fits_360_px(browser, stack, api_as):
    ctx = browser.new_context(viewport={"width": 360, "height": 800})
    try:
        c = Console(ctx.new_page(), stack)
        me = user()
        client = api_as(me)
        conn = api_connection(client, stack)
        client.post(f"/connections/{conn['id']}/credentials",
                    json={"name": "next", "credentials": {"api_key": fake_key("openai")}})
        page = open_detail(c, me, conn["id"])
        overflow = page.evaluate(
            "() => document.documentElement.scrollWidth - document.documentElement.clientWidth")
        assert overflow <= 0, overflow
        box = page.get_by_role("button", name="Revoke key next").bounding_box()
        assert box is not None and box["x"] + box["width"] <= 360
        assert not c.errors, c.errors
    finally:
        ctx.close()


def test_a_connection_allowed_more_than_30_s_is_tested_in_the_background(console: Console,
                                                                        api_as):
    """Issue 16 (2) in the console: "Test now" on a connection whose timeout is 60 s runs the
    test on the worker with that timeout, says so, and shows its result when it is done."""
    me = user()
    conn = api_connection(api_as(me), console.stack, settings={"timeout_seconds": 60})
    page = open_detail(console, me, conn["id"])
    page.get_by_role("button", name="Test now").click()
    page.get_by_text("Testing in the background (timeout 60 s)").wait_for()
    page.locator("[data-result-status]").first.wait_for(timeout=60_000)
    assert page.locator("[data-result-status]").first.get_attribute(
        "data-result-status") == "active"


def test_an_admin_changing_a_followed_base_url_is_told_the_cost_and_confirms(console: Console,
                                                                           api_as):
    """Issue 17 (2) in the console: the 409 provider_in_use becomes a warning naming how many
    connections' keys must be entered again, and a button that applies the change."""
    import uuid

    from tests.support.builders import provider_body

    admin_name = f"root-{uuid.uuid4().hex[:6]}"
    admin = api_as(admin_name, admin=True)
    pid = f"follow{uuid.uuid4().hex[:6]}"
    made = admin.post("/providers", json=provider_body(
        pid, base_url=console.stack.fake + "/openai/v1"))
    assert made.status_code == 201, made.text
    owner = api_as(user())
    conn = owner.post("/connections", json={"name": "follows", "provider": pid,
                                            "credentials": {"api_key": fake_key("openai")},
                                            "default_model": "gpt-4o"})
    assert conn.status_code == 201, conn.text
    console.open()
    console.sign_in(admin_name, admin=True)
    console.go(f"#/admin/providers/{pid}")
    page = console.page
    page.get_by_label("Base URL", exact=True).fill(console.stack.fake + "/azure")
    page.get_by_role("button", name="Save").click()
    warning = page.get_by_role("alert").filter(has_text="1 connection(s) use this provider")
    warning.wait_for()
    assert "enter the key again" in warning.inner_text()
    assert admin.get(f"/providers/{pid}").json()["base_url"].endswith("/openai/v1")
    page.get_by_role("button", name="Change the base URL anyway").click()
    page.locator(f"tr[data-provider='{pid}']").wait_for()
    assert admin.get(f"/providers/{pid}").json()["base_url"].endswith("/azure")

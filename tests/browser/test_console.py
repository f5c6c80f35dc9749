"""The Connections console in a real browser (Chromium through Playwright) against the
`make run` stack: what a person does with the page the user guide describes."""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

import pytest

from fakeprovider import control
from tests.browser.conftest import Console, axe_violations
from tests.support.fakes import fake_credentials, fake_key

pytestmark = pytest.mark.browser

FAMILY_PATH = {"openai": "/openai/v1", "anthropic": "/anthropic", "azure_openai": "/azure",
               "bedrock": "/bedrock", "google": "/google/v1beta", "cohere": "/cohere"}
# (provider id in the catalogue, default model the fake lists)
FAMILY = {
    "openai": ("custom", "gpt-4o"),
    "anthropic": ("anthropic", "claude-sonnet-4-5"),
    "azure_openai": ("azure_openai", "gpt-4o-prod"),
    "bedrock": ("bedrock", "anthropic.claude-3-5-sonnet-20240620-v1:0"),
    "google": ("google", "gemini-2.5-flash"),
    "cohere": ("cohere", "command-a-03-2025"),
}


def user() -> str:
    return f"u{uuid.uuid4().hex[:8]}"


def api_connection(client: Any, stack: Any, family: str = "openai", directive: str | None = None,
                   *, name: str | None = None, **extra: Any) -> dict[str, Any]:
    provider, model = FAMILY[family]
    key = fake_key(family, directive)
    body = {"name": name or f"{family} {directive or 'ok'} {key[-5:]}", "provider": provider,
            "base_url": stack.fake + FAMILY_PATH[family],
            "credentials": fake_credentials(family, key), "default_model": model, **extra}
    resp = client.post("/connections", json=body)
    assert resp.status_code == 201, resp.text
    return resp.json() | {"_key": key}


def signed_in_with_a_connection(console: Console, api_as: Any, *args: Any,
                                **kw: Any) -> tuple[Any, dict[str, Any], Any]:
    """Given a new user with one connection (``api_connection`` arguments), signed in."""
    me = user()
    client = api_as(me)
    conn = api_connection(client, console.stack, *args, **kw)
    console.open()
    console.sign_in(me)
    return client, conn, console.page


def fill_credentials(page: Any, family: str, key: str) -> None:
    if family == "bedrock":
        page.get_by_label("Access key ID").fill(key)
        page.get_by_label("Secret access key").fill(control.FAKE_BEDROCK_SECRET)
        page.get_by_label("Region").fill("us-east-1")
    else:
        page.get_by_label("API key").fill(key)


def check_status(page: Any, scope: str, expected: str) -> None:
    page.locator(f"{scope} [data-result-status]").wait_for()
    assert page.locator(f"{scope} [data-result-status]").get_attribute(
        "data-result-status") == expected


# ------------------------------------------------------------------ sign-in


def test_root_reaches_the_sign_in_and_a_user_signs_in_and_out(console: Console):
    page = console.page
    page.goto(f"{console.stack.api}/")
    assert page.url.endswith("/console")
    page.get_by_role("heading", name="Sign in", exact=True).wait_for()
    console.sign_in("alice")
    page.get_by_role("heading", name="Connections", exact=True).wait_for()
    assert page.locator("#whoami").inner_text() == "alice"
    # A non-admin never sees the administration pages' controls
    assert not page.get_by_role("link", name="Providers").is_visible()
    console.go("#/admin/providers")
    page.get_by_role("heading", name="Not found", exact=True).wait_for()
    page.get_by_role("button", name="Sign out").click()
    page.get_by_role("heading", name="Sign in", exact=True).wait_for()
    assert "llmc.session" not in console.storage()


def test_switching_users_never_shows_the_previous_users_data(console: Console, api_as):
    # Given alice has a connection and is signed in, looking at it
    alice = user()
    conn = api_connection(api_as(alice), console.stack, name=f"alice-secret-project-{alice}")
    page = console.page
    console.open()
    console.sign_in(alice)
    page.get_by_role("link", name=conn["name"], exact=True).wait_for()
    # When she signs out and bob signs in (a watcher records any frame showing her data)
    page.get_by_role("button", name="Sign out").click()
    page.get_by_role("heading", name="Sign in", exact=True).wait_for()
    page.evaluate("""name => { window.__flash = false;
        new MutationObserver(() => { if (document.body.textContent.includes(name))
            window.__flash = true; }).observe(document.body,
            {childList: true, subtree: true, characterData: true}); }""", conn["name"])
    console.sign_in(user())
    page.get_by_role("heading", name="Connections", exact=True).wait_for()
    page.get_by_text("No connections yet").wait_for()
    # Then not one frame ever showed alice's connection
    assert page.evaluate("() => window.__flash") is False


# ------------------------------------------------------------------ add, test, save


@pytest.mark.parametrize("family", list(FAMILY))
def test_add_test_and_save_a_connection_of_each_family(console: Console, api_as, family):
    provider, model = FAMILY[family]
    key = fake_key(family)
    page = console.page
    console.open()
    console.sign_in(user())
    page.get_by_role("link", name="+ Add Connection").click()
    page.get_by_role("combobox", name="Provider").select_option(provider)
    page.get_by_label("Connection name").fill(f"My {family}")
    fill_credentials(page, family, key)
    page.locator("#c-base").fill(console.stack.fake + FAMILY_PATH[family])
    # Test before saving: every check, and the models found
    page.get_by_role("button", name="Test Connection").click()
    check_status(page, "#test-results", "active")
    results = page.locator("#test-results")
    for check in ("Connectivity", "Authentication", "Model access", "Performance"):
        assert results.get_by_text(check, exact=True).is_visible()
    assert re.search(r"\d+ models found", results.inner_text())
    # The detected models are offered; picking one fills the default model (Azure lists
    # models, not the deployment names a connection uses: typed instead)
    if family == "azure_openai":
        page.get_by_label("Default model", exact=True).fill(model)
    else:
        page.get_by_role("button", name=f"Use {model} as default model").click()
    assert page.get_by_label("Default model", exact=True).input_value() == model
    page.get_by_role("button", name="Save").click()
    page.get_by_role("heading", name=f"My {family}", exact=True).wait_for()
    # Saved: the API has it, and the page shows the secret only as its mask
    conn_id = page.url.rsplit("/", 1)[-1]
    assert page.get_by_text("Credentials").is_visible()
    assert key not in console.everything()
    if family != "bedrock":
        assert page.get_by_text(f"api_key: ••••••••{key[-4:]}").is_visible()
    got = api_as("admin", admin=True).get(f"/connections/{conn_id}")
    assert got.status_code == 200 and got.json()["default_model"] == model


def test_field_errors_show_next_to_the_field_the_api_names(console: Console):
    page = console.page
    console.open()
    console.sign_in(user())
    console.go("#/connections/new")
    page.get_by_role("combobox", name="Provider").select_option("custom")
    # Client-side: a required field left empty
    page.get_by_role("button", name="Save").click()
    name = page.get_by_label("Connection name")
    assert name.get_attribute("aria-invalid") == "true"
    assert page.locator("#c-name-error").inner_text() == "Connection name is required."
    # Server-side: the API's `field` puts the message beside the base URL
    name.fill("bad url")
    page.get_by_label("API key").fill(fake_key("openai"))
    page.locator("#c-base").fill("ftp://example.com/v1")
    page.get_by_role("button", name="Save").click()
    page.locator("#c-base[aria-invalid=true]").wait_for()
    assert "base_url" in page.locator("#c-base-error").inner_text()
    assert page.evaluate("() => document.activeElement.id") == "c-base"


# ------------------------------------------------------------------ edit, stale edit


def test_edit_a_setting_with_if_match_keeps_the_secret(console: Console, api_as):
    client, conn, page = signed_in_with_a_connection(console, api_as)
    page.get_by_role("link", name=f"Edit {conn['name']}").click()
    # The secret is shown only as its mask, and left empty it is kept
    key_input = page.get_by_label("API key")
    assert key_input.input_value() == ""
    assert key_input.get_attribute("placeholder") == conn["credentials_masked"]["api_key"]
    page.get_by_label("Request timeout (seconds)").fill("12")
    # Test the edit before saving (the stored key, the new timeout): not recorded
    page.get_by_role("button", name="Test Connection").click()
    check_status(page, "#test-results", "active")
    page.get_by_role("button", name="Save").click()
    page.get_by_role("heading", name=conn["name"], exact=True).wait_for()
    after = client.get(f"/connections/{conn['id']}").json()
    assert after["settings"]["timeout_seconds"] == 12
    assert after["version"] == conn["version"] + 1
    assert after["credentials_masked"] == conn["credentials_masked"]
    assert after["status"] == "untested"  # the draft test recorded nothing
    audit = client.get("/audit").json()["items"]
    update = next(e for e in audit if e["action"] == "connection.update")
    assert update["changed_fields"] == ["settings"]


def test_a_stale_edit_is_refused_and_offers_a_reload(console: Console, api_as):
    client, conn, page = signed_in_with_a_connection(console, api_as)
    console.go(f"#/connections/{conn['id']}/edit")
    page.get_by_label("Description").fill("mine")
    # Meanwhile someone else changes the connection
    r = client.patch(f"/connections/{conn['id']}", json={"description": "theirs"})
    assert r.status_code == 200
    page.get_by_role("button", name="Save").click()
    alert = page.get_by_role("alert").filter(has_text="changed elsewhere")
    alert.wait_for()
    assert client.get(f"/connections/{conn['id']}").json()["description"] == "theirs"
    alert.get_by_role("button", name="Reload").click()
    page.wait_for_function("() => document.querySelector('#c-description')?.value === 'theirs'")


def test_changing_the_base_url_asks_for_the_secret_again(console: Console, api_as):
    _, conn, page = signed_in_with_a_connection(console, api_as)
    console.go(f"#/connections/{conn['id']}/edit")
    page.locator("#c-base").fill(console.stack.fake + "/openai/v1/other")
    assert page.get_by_text("Changing the base URL needs the secret again").is_visible()
    page.get_by_role("button", name="Save").click()
    assert page.get_by_label("API key").get_attribute("aria-invalid") == "true"
    assert "required" in page.locator("#cred-api_key-error").inner_text()


# ------------------------------------------------------------------ test a saved one


def test_test_a_saved_connection_from_the_list(console: Console, api_as):
    _, conn, page = signed_in_with_a_connection(console, api_as)
    row = page.locator(f"tr[data-id='{conn['id']}']")
    assert row.locator("[data-status]").get_attribute("data-status") == "untested"
    row.get_by_role("button", name=f"Test {conn['name']}").click()
    page.locator(f"tr[data-id='{conn['id']}'] [data-status='active']").wait_for()
    row = page.locator(f"tr[data-id='{conn['id']}']")
    assert "Active" in row.inner_text()  # the word, not only the colour
    assert re.search(r"Active · \d+ ms", row.locator("td[data-label='Last test']").inner_text())


# (directive, settings, expected status, troubleshooting title)
TROUBLE = [
    ("401", {}, "error", "Invalid API Key"),
    ("403", {}, "error", "Permission Denied"),
    ("hang", {"timeout_seconds": 2, "max_retries": 0}, "error", "Connection Timeout"),
    ("404", {}, "warning", "Model Not Available"),
    # a 429 once the key is proven valid is a warning (README: status rules)
    ("429", {"max_retries": 0}, "warning", "Rate Limit Exceeded"),
    ("quota", {}, "error", "Quota Exhausted"),
    ("503", {"max_retries": 0}, "error", "Provider Unavailable"),
    ("reset", {"max_retries": 0}, "error", "Network Error"),
    ("badjson", {"max_retries": 0}, "error", "Unexpected Response"),
    ("headroom", {}, "warning", "Rate Limit Nearly Reached"),
]


@pytest.mark.parametrize("directive, settings, status, title", TROUBLE,
                         ids=[t[0] for t in TROUBLE])
def test_every_troubleshooting_case_shows_its_title_and_steps(console: Console, api_as,
                                                                directive, settings, status,
                                                                title):
    _, conn, page = signed_in_with_a_connection(console, api_as, "openai", directive,
                                                settings=settings)
    console.go(f"#/connections/{conn['id']}")
    page.get_by_role("button", name="Test now").click()
    # A progress indicator while the test runs
    check_status(page, "", status)
    panel = page.get_by_role("region", name="Troubleshooting")
    panel.get_by_role("heading", name=re.compile(title)).wait_for()
    steps = panel.locator("ol li")
    assert steps.count() >= 2
    assert all(s.strip() for s in steps.all_inner_texts())
    # The list shows the same status, in words, with the problem's title
    console.go("#/connections")
    row = page.locator(f"tr[data-id='{conn['id']}']")
    row.wait_for()
    assert row.locator("[data-status]").get_attribute("data-status") == status
    assert title in row.inner_text()


def test_slow_connection_shows_progress_then_a_slow_warning(console: Console, api_as,
                                                            stack):
    admin = api_as("root", admin=True)
    pid = f"slow{uuid.uuid4().hex[:6]}"
    r = admin.post("/providers", json={
        "id": pid, "name": f"Slow {pid}", "adapter": "openai", "base_url_required": True,
        "credential_fields": [{"name": "api_key", "label": "API key", "secret": True,
                               "required": True}],
        "default_settings": {"slow_threshold_ms": 300}})
    assert r.status_code == 201, r.text
    me = user()
    key = fake_key("openai", "slow1500")
    conn = api_as(me).post("/connections", json={
        "name": "slowpoke", "provider": pid, "base_url": stack.fake + "/openai/v1",
        "credentials": {"api_key": key}, "default_model": "gpt-4o"}).json()
    page = console.page
    console.open()
    console.sign_in(me)
    console.go(f"#/connections/{conn['id']}")
    page.get_by_role("button", name="Test now").click()
    page.get_by_role("status").filter(has_text="Testing").wait_for()
    check_status(page, "", "warning")
    page.get_by_role("region", name="Troubleshooting").get_by_role(
        "heading", name=re.compile("Slow Responses")).wait_for()


# ------------------------------------------------------------------ delete


def test_delete_without_dependents_after_confirming(console: Console, api_as):
    client, conn, page = signed_in_with_a_connection(console, api_as)
    page.get_by_role("button", name=f"Delete {conn['name']}").click()
    dialog = page.get_by_role("dialog")
    assert "cannot be undone" in dialog.inner_text()
    dialog.get_by_role("button", name="Cancel").click()
    assert client.get(f"/connections/{conn['id']}").status_code == 200
    page.get_by_role("button", name=f"Delete {conn['name']}").click()
    page.get_by_role("dialog").get_by_role("button", name="Delete").click()
    page.locator(f"tr[data-id='{conn['id']}']").wait_for(state="detached")
    assert client.get(f"/connections/{conn['id']}").status_code == 404


def test_delete_with_dependents_lists_them_and_needs_the_name_typed(console: Console, api_as):
    me = user()
    client = api_as(me)
    conn = api_connection(client, console.stack)
    for dep in ("prompt-1", "prompt-2"):
        r = client.put(f"/connections/{conn['id']}/dependents/{dep}",
                       json={"kind": "prompt", "display_name": f"Marketing {dep}"})
        assert r.status_code == 201
    page = console.page
    console.open()
    console.sign_in(me)
    console.go(f"#/connections/{conn['id']}")
    page.get_by_role("heading", name="Dependents (2)").wait_for()
    page.get_by_role("button", name=f"Delete {conn['name']}").click()
    dialog = page.get_by_role("dialog")
    deps = dialog.get_by_role("list", name="Dependents")
    assert "Marketing prompt-1" in deps.inner_text() and "Marketing prompt-2" in deps.inner_text()
    force = dialog.get_by_role("button", name="Force delete")
    assert force.is_disabled()
    box = dialog.get_by_label("Type the connection name to confirm")
    box.fill(conn["name"] + "x")
    assert force.is_disabled()
    box.fill(conn["name"])
    assert force.is_enabled()
    force.click()
    page.get_by_role("heading", name="Connections", exact=True).wait_for()
    assert client.get(f"/connections/{conn['id']}").status_code == 404


# ------------------------------------------------------------------ admin-made provider


def test_admin_adds_a_provider_and_a_user_gets_its_generated_form(console: Console, api_as,
                                                                 browser):
    pid = f"acme{uuid.uuid4().hex[:6]}"
    page = console.page
    console.open()
    console.sign_in("root-admin", admin=True)
    page.get_by_role("link", name="Providers").click()
    page.get_by_role("link", name="+ Add provider").click()
    page.get_by_label("Provider id").fill(pid)
    page.get_by_label("Display name").fill(f"Acme Gateway {pid}")
    page.get_by_label("Base URL", exact=True).fill(console.stack.fake + "/openai/v1")
    page.get_by_role("button", name="+ Add field").click()
    second = page.locator("fieldset.cred-field").nth(1)
    second.get_by_label("Field name").fill("team_id")
    second.get_by_label("Label").fill("Team ID")
    second.get_by_label("Pattern (regular expression)").fill("^team-[a-z]+$")
    second.get_by_label("Help text").fill("Your team, e.g. team-blue.")
    second.get_by_label("Required").check()
    page.get_by_role("button", name="Add provider").click()
    page.locator(f"tr[data-provider='{pid}']").wait_for()

    # A user, in another browser context, creates a connection with the generated form
    ctx = browser.new_context()
    try:
        other = Console(ctx.new_page(), console.stack)
        other.open()
        other.sign_in(user())
        other.go("#/connections/new")
        p2 = other.page
        p2.get_by_role("combobox", name="Provider").select_option(pid)
        p2.get_by_label("Connection name").fill("via acme")
        p2.get_by_label("API key").fill(fake_key("openai"))
        team = p2.get_by_label("Team ID")
        assert p2.get_by_text("Your team, e.g. team-blue.").is_visible()
        team.fill("Blue Team")
        p2.get_by_role("button", name="Test Connection").click()
        assert team.get_attribute("aria-invalid") == "true"
        assert "expected format" in p2.locator("#cred-team_id-error").inner_text()
        team.fill("team-blue")
        p2.get_by_role("button", name="Test Connection").click()
        check_status(p2, "#test-results", "active")
        p2.get_by_role("button", name="Save").click()
        p2.get_by_role("heading", name="via acme", exact=True).wait_for()
        assert p2.get_by_text("team_id: team-blue").is_visible()
        assert not other.errors, other.errors
    finally:
        ctx.close()
    # The admin disables the provider: it stays listed, marked, and refuses new connections
    page.get_by_role("button", name=f"Disable provider Acme Gateway {pid}").click()
    page.locator(f"tr[data-provider='{pid}']").get_by_text("Disabled").wait_for()
    r = api_as(user()).post("/connections", json={
        "name": "late", "provider": pid, "credentials": {"api_key": fake_key("openai"),
                                                         "team_id": "team-red"}})
    assert r.status_code == 422 and r.json()["error"]["code"] == "provider_disabled"


# ------------------------------------------------------------------ security in the page


def test_names_from_the_api_are_text_and_run_nothing(console: Console, api_as):
    me = user()
    evil = "<img src=x onerror=alert(1)>"
    conn = api_connection(api_as(me), console.stack, name=evil,
                          description="<script>alert(2)</script>")
    page = console.page
    page.add_init_script("window.__xss = 0; window.alert = () => { window.__xss++; };")
    console.open()
    console.sign_in(me)
    page.get_by_role("link", name=evil, exact=True).wait_for()
    assert page.locator("tbody img").count() == 0
    assert page.get_by_text("<script>alert(2)</script>").is_visible()
    console.go(f"#/connections/{conn['id']}")
    page.get_by_role("heading", name=evil, exact=True).wait_for()
    console.go(f"#/connections/{conn['id']}/edit")
    page.get_by_role("heading", name=f"Edit {evil}", exact=True).wait_for()
    assert page.evaluate("() => window.__xss") == 0
    assert page.locator("main img").count() == 0


def test_no_secret_in_dom_url_storage_or_console_after_save(console: Console, api_as):
    me = user()
    key = fake_key("openai")
    page = console.page
    console.open()
    console.sign_in(me)
    console.go("#/connections/new")
    page.get_by_role("combobox", name="Provider").select_option("custom")
    page.get_by_label("Connection name").fill("secret check")
    page.get_by_label("API key").fill(key)
    page.locator("#c-base").fill(console.stack.fake + "/openai/v1")
    page.get_by_role("button", name="Save").click()
    page.get_by_role("heading", name="secret check", exact=True).wait_for()
    conn_id = page.url.rsplit("/", 1)[-1]
    assert key not in console.everything()
    console.go(f"#/connections/{conn_id}/edit")
    page.get_by_role("heading", name="Edit secret check", exact=True).wait_for()
    assert key not in console.everything()
    console.go("#/connections")
    page.get_by_role("link", name="secret check", exact=True).wait_for()
    assert key not in console.everything()


def test_responses_carry_the_security_headers(console: Console):
    resp = console.page.goto(f"{console.stack.api}/console")
    headers = resp.all_headers()
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert "'unsafe-inline'" not in headers["content-security-policy"]
    assert "'unsafe-eval'" not in headers["content-security-policy"]
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["referrer-policy"] == "no-referrer"


# ------------------------------------------------------------------ detail, usage, invoke


def test_detail_shows_history_chart_and_the_playground_answers(console: Console, api_as):
    me = user()
    client = api_as(me)
    conn = api_connection(client, console.stack)
    for _ in range(3):
        assert client.post(f"/connections/{conn['id']}/test", json={}).status_code == 200
    page = console.page
    console.open()
    console.sign_in(me)
    console.go(f"#/connections/{conn['id']}")
    history = page.get_by_role("table", name="Test history")
    history.locator("tbody tr").nth(2).wait_for()
    assert history.locator("tbody tr").count() == 3
    page.locator("#usage-chart canvas").wait_for()
    page.get_by_role("button", name="30 days").click()
    assert page.get_by_role("button", name="30 days").get_attribute("aria-pressed") == "true"
    page.get_by_label("Prompt").fill("Say hi")
    page.get_by_role("button", name="Send").click()
    out = page.locator("#invoke-output")
    out.locator("pre").wait_for()
    assert "fakeprovider" in out.inner_text()
    assert re.search(r"\d+ tokens in, \d+ out · \d+ ms", out.inner_text())


# ------------------------------------------------------------------ notifications, audit


def test_notifications_add_and_remove_an_email(console: Console):
    page = console.page
    console.open()
    console.sign_in(user())
    page.get_by_role("link", name="Notifications").click()
    page.get_by_label("E-mail address").fill("not-an-email")
    page.get_by_role("button", name="Add subscription").click()
    page.locator("#n-email[aria-invalid=true]").wait_for()
    page.get_by_label("E-mail address").fill("ops@example.com")
    page.get_by_label("Delivery").select_option("digest")
    page.get_by_role("button", name="Add subscription").click()
    row = page.get_by_role("row").filter(has_text="ops@example.com")
    row.wait_for()
    assert "Waiting for confirmation" in row.inner_text() or "Confirmed" in row.inner_text()
    assert row.locator("td[data-label=Delivery]").inner_text() == "Daily digest"
    row.get_by_role("button", name="Remove ops@example.com").click()
    page.get_by_text("No alert e-mails yet.").wait_for()


def test_audit_trail_and_admin_filters(console: Console, api_as):
    me = user()
    api_connection(api_as(me), console.stack)
    page = console.page
    console.open()
    console.sign_in(me)
    page.get_by_role("link", name="Audit").click()
    page.get_by_role("cell", name="connection.create").first.wait_for()
    assert page.get_by_label("User", exact=True).count() == 0  # filters are an admin's
    page.get_by_role("button", name="Sign out").click()
    console.sign_in("auditor", admin=True)
    console.go("#/audit")
    page.get_by_label("User", exact=True).fill(me)
    page.get_by_label("Action", exact=True).fill("connection.create")
    page.get_by_role("button", name="Filter").click()
    page.get_by_role("cell", name=me).first.wait_for()
    actors = page.locator("td[data-label=Actor]").all_inner_texts()
    assert actors and all(a.startswith(me) for a in actors)


def test_admin_sees_usage_across_users(console: Console, api_as):
    me = user()
    client = api_as(me)
    conn = api_connection(client, console.stack)
    r = client.post(f"/connections/{conn['id']}/invoke",
                    json={"messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 200
    page = console.page
    console.open()
    console.sign_in("usage-admin", admin=True)
    page.get_by_role("link", name="Usage").click()
    page.get_by_label("User", exact=True).fill(me)
    page.get_by_role("button", name="Show usage").click()
    row = page.get_by_role("row").filter(has_text=conn["name"])
    row.wait_for()
    assert row.locator("td[data-label='Requests 7 d']").inner_text() == "1"


# ------------------------------------------------------------------ export / import


def test_export_downloads_a_file_without_secrets_and_import_uploads_it(console: Console,
                                                                        api_as, tmp_path):
    _, conn, page = signed_in_with_a_connection(console, api_as)
    with page.expect_download() as info:
        page.get_by_role("button", name="Export").click()
    path = tmp_path / "export.json"
    info.value.save_as(path)
    doc = json.loads(path.read_text())
    assert [c["name"] for c in doc["connections"]] == [conn["name"]]
    assert conn["_key"] not in path.read_text()
    # Another user imports the file: the connection arrives needing credentials
    page.get_by_role("button", name="Sign out").click()
    console.sign_in(user())
    page.get_by_text("No connections yet").wait_for()
    page.locator("#import-file").set_input_files(str(path))
    page.get_by_role("link", name=conn["name"], exact=True).wait_for()
    assert page.get_by_text("Needs credentials").is_visible()


# ------------------------------------------------------------------ quality


def test_keyboard_only_add_test_and_save(console: Console):
    page = console.page
    key = fake_key("openai")
    console.open()
    console.sign_in(user())
    page.get_by_role("heading", name="Connections", exact=True).wait_for()

    def tab_to(selector: str, limit: int = 80) -> None:
        for _ in range(limit):
            page.keyboard.press("Tab")
            if page.evaluate("s => document.activeElement?.matches(s) ?? false", selector):
                return
        raise AssertionError(f"Tab never reached {selector}")

    tab_to("a[href='#/connections/new']")
    page.keyboard.press("Enter")
    page.locator("#c-provider:focus").wait_for()
    page.keyboard.type("Custom")
    page.locator("#c-name").wait_for()
    tab_to("#c-name")
    page.keyboard.type("keyboard only")
    tab_to("#cred-api_key")
    page.keyboard.type(key)
    tab_to("#c-base")
    page.keyboard.type(console.stack.fake + "/openai/v1")
    tab_to("#btn-test")
    page.keyboard.press("Enter")
    check_status(page, "#test-results", "active")
    tab_to("#c-model")
    page.keyboard.type("gpt-4o")
    tab_to("#btn-save")
    page.keyboard.press("Enter")
    page.get_by_role("heading", name="keyboard only", exact=True).wait_for()


def test_works_at_360_px_wide(console: Console, api_as):
    me = user()
    conn = api_connection(api_as(me), console.stack)
    page = console.page
    page.set_viewport_size({"width": 360, "height": 740})
    console.open()
    console.sign_in(me)
    page.get_by_role("link", name=conn["name"], exact=True).wait_for()

    def fits() -> bool:
        wide = page.evaluate("""() => [...document.querySelectorAll('body *')]
            .filter(e => e.getBoundingClientRect().right > window.innerWidth + 1)
            .slice(0, 5).map(e => `${e.tagName}.${e.className}#${e.id}`)""")
        assert not wide, wide
        return bool(page.evaluate(
            "() => document.documentElement.scrollWidth <= window.innerWidth"))

    assert fits()
    # The menu folds away and opens on demand
    menu = page.get_by_role("button", name="Menu")
    assert menu.get_attribute("aria-expanded") == "false"
    menu.click()
    page.get_by_role("link", name="Notifications").wait_for()
    console.go("#/connections/new")
    page.get_by_role("combobox", name="Provider").select_option("openai")
    assert fits()
    console.go(f"#/connections/{conn['id']}")
    page.get_by_role("heading", name="Test history", exact=True).wait_for()
    assert fits()


PAGES = ["#/connections", "#/connections/new", "DETAIL", "#/notifications", "#/audit",
         "#/incidents",
         "#/admin/providers", "#/admin/providers/new", "#/admin/usage", "SIGNIN"]


def test_accessibility_scan_has_no_serious_or_critical_violation(browser, stack, api_as):
    # axe-core is injected as a script, which the console's CSP (rightly) refuses: this one
    # context bypasses the CSP for the scan alone.
    ctx = browser.new_context(bypass_csp=True, viewport={"width": 1280, "height": 900})
    ctx.set_default_timeout(15000)
    try:
        c = Console(ctx.new_page(), stack)
        conn = api_connection(api_as("a11y-admin", admin=True), stack, "openai", "401")
        api_as("a11y-admin", admin=True).post(f"/connections/{conn['id']}/test", json={})
        found: dict[str, Any] = {}
        for target in PAGES:
            c.open()
            if target == "SIGNIN":
                c.page.get_by_role("heading", name="Sign in", exact=True).wait_for()
            else:
                if not c.page.get_by_role("button", name="Sign out").is_visible():
                    c.sign_in("a11y-admin", admin=True)
                c.go(f"#/connections/{conn['id']}" if target == "DETAIL" else target)
                c.page.wait_for_timeout(200)
                c.page.locator("main h1").first.wait_for()
                if target == "#/connections/new":
                    c.page.get_by_role("combobox", name="Provider").select_option("bedrock")
                if target == "DETAIL":
                    c.page.get_by_role("region", name="Troubleshooting").wait_for()
                    c.page.get_by_role("table", name="Keys").wait_for()
            bad = axe_violations(c.page)
            if bad:
                found[target] = bad
            if target != "SIGNIN":
                c.page.get_by_role("button", name="Sign out").click()
        assert not found, json.dumps(found, indent=1)
        assert not c.errors, c.errors
    finally:
        ctx.close()


# ------------------------------------------------------------------ Cognito hosted UI (PKCE)


def test_cognito_sign_in_with_pkce_refresh_and_sign_out(browser, stack):
    """The cloud stages' sign-in, end to end in the browser: the console's config names a
    Cognito domain (as the deployed API's does, with that domain in the CSP's connect-src);
    the hosted UI is played by this test at the network layer, checking PKCE for real."""
    import base64
    import hashlib
    import time
    from urllib.parse import parse_qs, urlencode, urlparse

    from devtools.token import make_token

    domain = "https://llmc-test.auth.us-east-1.amazoncognito.com"
    client_id = "console-client-id"
    me = user()
    seen: dict[str, Any] = {"challenge": None, "refreshes": 0, "logout": None}

    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    ctx.set_default_timeout(15000)

    def page_with_cognito_csp(route: Any) -> None:
        resp = route.fetch()
        headers = dict(resp.headers)
        headers["content-security-policy"] = headers["content-security-policy"].replace(
            "connect-src 'self'", f"connect-src 'self' {domain}")
        route.fulfill(response=resp, headers=headers)

    def config(route: Any) -> None:
        route.fulfill(json={"stage": "dev", "version": "test", "auth": {
            "mode": "cognito", "domain": domain, "client_id": client_id,
            "scopes": ["openid", "email", "profile"]}})

    def authorize(route: Any) -> None:
        q = {k: v[0] for k, v in parse_qs(urlparse(route.request.url).query).items()}
        assert q["response_type"] == "code" and q["client_id"] == client_id
        assert q["code_challenge_method"] == "S256" and len(q["code_challenge"]) == 43
        assert q["redirect_uri"] == f"{stack.api}/console"
        assert set(q["scope"].split()) == {"openid", "email", "profile"}
        seen["challenge"] = q["code_challenge"]
        # The user signs in at the hosted UI, which sends the browser back with a code (the
        # test follows that redirect itself: a route-fulfilled 302's target is not routed).
        seen["back"] = f"{q['redirect_uri']}?" + urlencode({"code": "auth-code-1",
                                                            "state": q["state"]})
        route.fulfill(status=200, content_type="text/html", body="<h1>Hosted UI</h1>")

    cors = {"access-control-allow-origin": stack.api}

    def token(route: Any) -> None:
        if route.request.method == "OPTIONS":
            route.fulfill(status=204, headers={**cors, "access-control-allow-headers":
                                               "content-type",
                                               "access-control-allow-methods": "POST"})
            return
        form = {k: v[0] for k, v in parse_qs(route.request.post_data or "").items()}
        assert form["client_id"] == client_id
        if form["grant_type"] == "authorization_code":
            digest = hashlib.sha256(form["code_verifier"].encode()).digest()
            assert base64.urlsafe_b64encode(digest).rstrip(b"=").decode() == seen["challenge"]
            assert form["code"] == "auth-code-1"
            assert form["redirect_uri"] == f"{stack.api}/console"
        else:
            assert form["grant_type"] == "refresh_token" and form["refresh_token"] == "rt-1"
            seen["refreshes"] += 1
        # 125 s to live: the console refreshes 2 minutes before expiry, so within seconds
        body = {"id_token": make_token(me, ttl=125), "access_token": "unused",
                "token_type": "Bearer", "expires_in": 125}
        if form["grant_type"] == "authorization_code":
            body["refresh_token"] = "rt-1"
        route.fulfill(json=body, headers=cors)

    def revoke(route: Any) -> None:
        if route.request.method == "OPTIONS":
            route.fulfill(status=204, headers=cors)
            return
        form = {k: v[0] for k, v in parse_qs(route.request.post_data or "").items()}
        seen["revoked"] = form
        route.fulfill(status=200, body="", headers=cors)

    def logout(route: Any) -> None:
        q = {k: v[0] for k, v in parse_qs(urlparse(route.request.url).query).items()}
        seen["logout"] = q
        route.fulfill(status=200, content_type="text/html", body="<h1>Signed out</h1>")

    try:
        ctx.route(re.compile(rf"{re.escape(stack.api)}/console(\?.*)?$"), page_with_cognito_csp)
        ctx.route(f"{stack.api}/console/config.json", config)
        ctx.route(f"{domain}/oauth2/authorize?*", authorize)
        ctx.route(f"{domain}/oauth2/token", token)
        ctx.route(f"{domain}/oauth2/revoke", revoke)
        ctx.route(f"{domain}/logout?*", logout)
        c = Console(ctx.new_page(), stack)
        c.open()
        page = c.page
        page.get_by_role("button", name="Sign in").click()
        page.get_by_role("heading", name="Hosted UI").wait_for()
        page.goto(seen["back"])
        page.get_by_role("heading", name="Connections", exact=True).wait_for()
        assert page.locator("#whoami").inner_text() == me
        assert "code=" not in page.url  # the code is removed from the address at once
        assert ctx.cookies() == []
        assert "rt-1" not in page.evaluate("() => JSON.stringify(localStorage)")
        deadline = time.monotonic() + 20
        while seen["refreshes"] == 0 and time.monotonic() < deadline:
            page.wait_for_timeout(500)
        assert seen["refreshes"] >= 1, "the token was not refreshed before expiry"
        page.get_by_role("button", name="Sign out").click()
        page.get_by_role("heading", name="Signed out").wait_for()
        assert seen["revoked"] == {"token": "rt-1", "client_id": client_id}
        assert seen["logout"] == {"client_id": client_id, "logout_uri": f"{stack.api}/console"}
        page.goto(seen["logout"]["logout_uri"])
        page.get_by_role("button", name="Sign in").wait_for()
        assert "llmc.session" not in c.storage()
        assert not c.errors, c.errors
    finally:
        ctx.close()


def test_admin_opens_another_users_connections_and_tests_one_with_a_probe(console: Console,
                                                                         api_as):
    owner = user()
    conn = api_connection(api_as(owner), console.stack)
    page = console.page
    console.open()
    console.sign_in("ops-admin", admin=True)
    page.get_by_label("Owner (admin)").fill(owner)
    page.get_by_role("button", name="Show").click()
    page.get_by_role("heading", name=f"Connections of {owner}", exact=True).wait_for()
    page.get_by_role("link", name=conn["name"], exact=True).click()
    page.get_by_role("heading", name=conn["name"], exact=True).wait_for()
    console.go(f"#/connections/{conn['id']}/edit")
    page.get_by_label("Also send a 1-token request to the default model").check()
    page.get_by_role("button", name="Test Connection").click()
    check_status(page, "#test-results", "active")
    assert "Passed" in page.locator("[data-check=model_access]").inner_text()
    # Every step was an admin action on someone else's data, and audited as such
    events = api_as("ops-admin", admin=True).get(
        "/audit", params={"user": "ops-admin"}).json()["items"]
    assert any(e["action"] == "connection.list" and e["target"] == f"owner:{owner}"
               for e in events)
    test = next(e for e in events if e["action"] == "connection.test"
                and e["target"] == f"connection:{conn['id']}")
    assert test["admin_action"] is True and test["target_owner"] == owner


def test_local_sign_in_refuses_a_rebound_host_over_http(stack):
    import httpx

    body = {"user": "mallory", "admin": True}
    ok = httpx.post(f"{stack.api}/console/local-signin", json=body, trust_env=False)
    assert ok.status_code == 200 and ok.json()["id_token"]
    rebound = httpx.post(f"{stack.api}/console/local-signin", json=body, trust_env=False,
                         headers={"Host": "attacker.example"})
    assert rebound.status_code == 403
    assert "id_token" not in rebound.text


def test_a_provider_outage_shows_as_an_incident_and_yellow_connections(console: Console,
                                                                       api_as, stack):
    # Given an admin-made provider whose 6 connections (3 owners) all hit a 503 outage
    admin = api_as("incident-admin", admin=True)
    pid = f"down{uuid.uuid4().hex[:6]}"
    r = admin.post("/providers", json={
        "id": pid, "name": f"Down {pid}", "adapter": "openai",
        "base_url": stack.fake + "/openai/v1", "base_url_required": False,
        "credential_fields": [{"name": "api_key", "label": "API key", "secret": True,
                               "required": True}]})
    assert r.status_code == 201, r.text
    # (a catalogue endpoint: incidents of users' own base URLs are shown to admins only)
    owners = [user() for _ in range(3)]
    conns = []
    for i in range(6):
        resp = api_as(owners[i % 3]).post("/connections", json={
            "name": f"outage {i}", "provider": pid,
            "credentials": {"api_key": fake_key("openai", "503")}, "default_model": "gpt-4o",
            "settings": {"max_retries": 0, "timeout_seconds": 3}})
        assert resp.status_code == 201, resp.text
        conns.append(resp.json())
    # When the daily run tests them
    stack.run_tool("devtools.daily", "daily", "--json")
    # Then the console shows one open incident for that provider
    page = console.page
    console.open()
    console.sign_in(owners[0])
    page.get_by_role("link", name="Incidents").click()
    row = page.locator("tr[data-incident]").filter(has_text=pid)
    row.wait_for()
    assert "Open" in row.inner_text()
    assert int(row.locator("td[data-label=Affected]").inner_text()) >= 5
    assert "Provider Unavailable" in row.inner_text()
    # And the owner's connection is yellow with the incident's troubleshooting
    console.go(f"#/connections/{conns[0]['id']}")
    page.get_by_role("region", name="Troubleshooting").get_by_role(
        "heading", name=re.compile("Provider Incident")).wait_for()
    assert page.locator("[data-status]").first.get_attribute("data-status") == "warning"

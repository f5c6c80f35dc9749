"""The browser tier: Debian's Chromium driven by Playwright for Python, against the real
`make run` stack over HTTP (the e2e tier's ``stack`` fixture: moto server, fake providers,
`chalice local`). `make test` installs Chromium (apt) and Playwright (pip) on first use."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e import conftest as e2e
from tests.e2e.conftest import Stack

# The e2e tier's session fixture: one `make run` stack for the browser tests too.
stack = e2e.stack

VENDOR = Path(__file__).parent / "vendor"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--disable-dev-shm-usage"]


def chromium_path() -> str:
    path = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(path).exists():
        pytest.fail("Chromium is missing: `make test` installs it (apt-get install chromium)")
    return path


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    # Module scope, not session: Playwright's sync API keeps an event loop running in this
    # thread while it is open, and the app's own asyncio.run() (provider calls) must not see
    # one in the tiers that run after this module.
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        yield b
        b.close()


class Console:
    """One browser tab on the console, with the page's errors collected."""

    def __init__(self, page: Any, stack: Stack) -> None:
        self.page = page
        self.stack = stack
        self.errors: list[str] = []
        self.console: list[str] = []
        self.dialogs: list[str] = []
        page.on("pageerror", lambda e: self.errors.append(str(e)))
        page.on("console", lambda m: self.console.append(f"{m.type}: {m.text}"))
        page.on("dialog", self._dialog)

    def _dialog(self, dialog: Any) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def open(self, hash_: str = "") -> None:
        self.page.goto(f"{self.stack.api}/console{hash_}")

    def sign_in(self, user: str, *, admin: bool = False) -> None:
        page = self.page
        if not page.url.startswith(self.stack.api):
            page.goto(f"{self.stack.api}/")
        page.get_by_label("User name").fill(user)
        page.get_by_label("Administrator (admins group)").set_checked(admin)
        page.get_by_role("button", name="Sign in").click()
        page.get_by_role("button", name="Sign out").wait_for()

    def go(self, hash_: str) -> None:
        self.page.evaluate("h => { location.hash = h; }", hash_)

    def storage(self) -> str:
        return str(self.page.evaluate(
            "() => JSON.stringify([Object.entries(localStorage), Object.entries(sessionStorage)])"))

    def everything(self) -> str:
        """Every place a secret must never be: the DOM (with input values), the URL, web
        storage and the console log."""
        dom = self.page.evaluate("""() => document.documentElement.outerHTML + '\\n' +
            [...document.querySelectorAll('input, textarea')].map(i => i.value).join('\\n')""")
        return "\n".join([dom, self.page.url, self.storage(), *self.console])


@pytest.fixture()
def console(browser: Any, stack: Stack) -> Iterator[Console]:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    context.set_default_timeout(15000)
    page = context.new_page()
    c = Console(page, stack)
    yield c
    context.close()
    assert not c.errors, c.errors
    assert not c.dialogs, f"a script opened a dialog: {c.dialogs}"


@pytest.fixture()
def api_as(stack: Stack) -> Any:
    clients: list[httpx.Client] = []

    def make(user: str, admin: bool = False) -> httpx.Client:
        client = stack.client(user, admin=admin)
        clients.append(client)
        return client

    yield make
    for c in clients:
        c.close()


def axe_violations(page: Any) -> list[dict[str, Any]]:
    """Run axe-core (vendored) on the page; serious and critical violations only."""
    page.add_script_tag(path=str(VENDOR / "axe.min.js"))
    result = page.evaluate("async () => JSON.stringify(await axe.run(document))")
    violations = json.loads(result)["violations"]
    return [{"id": v["id"], "impact": v["impact"], "help": v["help"],
             "nodes": [n["target"] for n in v["nodes"]][:5]}
            for v in violations if v["impact"] in ("serious", "critical")]

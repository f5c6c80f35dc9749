"""Response headers: no-store on every API answer, HSTS only in cloud stages."""

from __future__ import annotations

import dataclasses

import pytest

from tests.conftest import openai_body

pytestmark = pytest.mark.integration


def _answers(api):
    created = api.post("/connections", openai_body("H"))
    cid = created.data["id"]
    return [created, api.get("/connections"), api.get(f"/connections/{cid}"),
            api.patch(f"/connections/{cid}", {"name": "H2"}, headers={"if-match": '"v9"'}),
            api.post("/connections", raw=b"[" * 100), api.put("/connections", {}),
            api.get("/connections", auth=False), api.delete(f"/connections/{cid}"),
            api.get("/health", auth=False)]


def test_every_answer_is_no_store_and_local_has_no_hsts(api):
    for resp in _answers(api):
        assert resp.headers.get("cache-control") == "no-store", resp.status_code
        assert "strict-transport-security" not in resp.headers
        assert "server" not in resp.headers


@pytest.mark.parametrize("stage", ["dev", "prod"])
def test_cloud_stages_send_hsts(api, monkeypatch, stage):
    from chalicelib.api import http
    from chalicelib.settings import get_settings

    # Given the app answering as a cloud stage would
    cloud = dataclasses.replace(get_settings(), stage=stage)
    monkeypatch.setattr(http, "get_settings", lambda: cloud)
    # Then every answer, success or error, carries HSTS, and stays no-store
    for resp in _answers(api):
        assert resp.headers.get("strict-transport-security") == http.HSTS, resp.status_code
        assert resp.headers.get("cache-control") == "no-store"


def test_console_static_files_keep_their_own_caching(env):
    from types import SimpleNamespace

    from chalice.app import Response

    from chalicelib.api.http import _secure_headers

    def answer(method: str, path: str) -> dict:
        resp = Response(body="", headers={"Cache-Control": "public, max-age=300"})
        _secure_headers(SimpleNamespace(method=method, path=path), resp)  # type: ignore[arg-type]
        return resp.headers

    # Static files and the redirect (GET) keep theirs
    for path in ("/", "/console", "/console/", "/console/app.js"):
        assert answer("GET", path)["Cache-Control"] == "public, max-age=300"
    # Anything else, a POST under /console included, is no-store
    assert answer("POST", "/console/local-signin")["Cache-Control"] == "no-store"
    assert answer("GET", "/connections")["Cache-Control"] == "no-store"
    assert answer("GET", "/consoles")["Cache-Control"] == "no-store"

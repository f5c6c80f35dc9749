"""The packaged templates serve the console but never the local sign-in."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("stage", ["dev", "prod"])
def test_packaged_api_has_the_console_and_no_local_sign_in(templates, stage):
    text = json.dumps(templates[stage])
    paths = templates[stage]["Resources"]["RestAPI"]["Properties"]["DefinitionBody"]["paths"]
    assert "/console" in paths and "/console/assets/{name}" in paths and "/" in paths
    assert not any("local-signin" in p for p in paths), sorted(paths)
    assert "local-signin" not in text and "LOCAL_SIGNIN_KEY_FILE" not in text

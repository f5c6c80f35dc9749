"""Issue 16: `make token` without a name minted a token for the shell's $USER."""

from __future__ import annotations

import base64
import json
import os
import subprocess

import pytest

from devtools import localenv


def _sub(*args: str, **env: str) -> str:
    out = subprocess.run(["make", "-s", "token", *args], cwd=localenv.ROOT,
                         env={**os.environ, **env}, capture_output=True, text=True,
                         timeout=120, check=True)
    token = out.stdout.strip().splitlines()[-1]
    payload = token.split(".")[1]
    return str(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["sub"])


@pytest.mark.parametrize(("args", "env", "expected"), [
    ((), {"USER": "shell-user"}, "alice"),       # the shell's $USER is never used
    (("AS=carol",), {"USER": "shell-user"}, "carol"),
    (("USER=bob",), {}, "bob"),                   # as the README said before
])
def test_make_token_names_who_it_is_for(args, env, expected):
    assert _sub(*args, **env) == expected

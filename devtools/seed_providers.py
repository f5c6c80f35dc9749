"""Create the provider catalogue of a new deployment through its API:
`make seed-providers URL=<api url> TOKEN=<an admin's ID token>`.

A new stack's catalogue is empty (`make run` seeds the local one itself), and a connection
needs its provider. This posts each seed provider (``chalicelib.services.catalogue``) to
``POST /providers`` as an admin; one that already exists (409) is left as it is. The artifact
tests create the catalogue the same way, through the built bundle.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request


def post(url: str, token: str, body: object) -> int:
    req = urllib.request.Request(url, method="POST", data=json.dumps(body).encode(), headers={
        "Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def main() -> None:
    from chalicelib.services.catalogue import SEED_PROVIDERS

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True)
    args = parser.parse_args()
    token = os.environ.get("TOKEN", "")
    if not token:
        sys.exit("TOKEN (an admin's ID token) is required")
    failed = False
    for provider in SEED_PROVIDERS:
        status = post(f"{args.url.rstrip('/')}/providers", token, provider)
        verdict = {201: "created", 409: "already there"}.get(status, f"FAILED ({status})")
        failed |= status not in (201, 409)
        print(f"{provider['id']}: {verdict}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()

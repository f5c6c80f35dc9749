"""The packaged templates of every stage, built once per session (or reused from `make
package` when newer than every source they are built from)."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

from infra import codescan, lambdas, names

SOURCES = ("app.py", "chalicelib/**/*.py", "infra/**/*.py", ".chalice/config.json",
           "requirements.txt")


def _fresh(stage: str) -> bool:
    sam = names.build_dir(stage) / "sam.json"
    if not sam.exists():
        return False
    newest = max(p.stat().st_mtime for pattern in SOURCES for p in names.ROOT.glob(pattern))
    return sam.stat().st_mtime >= newest


@pytest.fixture(scope="session")
def templates() -> dict[str, dict[str, Any]]:
    out = {}
    for stage in names.DEPLOY_STAGES:
        if not _fresh(stage):
            done = subprocess.run([sys.executable, "-m", "infra.package", "--stage", stage],
                                  cwd=names.ROOT, capture_output=True, text=True)
            if done.returncode:
                pytest.fail(f"packaging {stage} failed:\n{done.stdout[-2000:]}"
                            f"{done.stderr[-4000:]}")
        out[stage] = json.loads((names.build_dir(stage) / "sam.json").read_text())
    return out


@pytest.fixture(scope="session")
def functions() -> dict[str, list[lambdas.LambdaInfo]]:
    return {stage: lambdas.load(stage) for stage in names.DEPLOY_STAGES}


@pytest.fixture(scope="session")
def scan() -> codescan.Scan:
    return codescan.scan()

"""The artifact tier: the bundles `make package` built, extracted and run as Lambda runs them
(``devtools.artifact``), against the emulator on a free loopback port."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from devtools import artifact, localenv, localstack
from devtools.emulator import Emulator
from devtools.token import ensure_keys, make_token
from infra import names
from tests.infra.conftest import _fresh

USER = "artifact-user"


@dataclass
class Run:
    endpoint: str
    parameters: dict[str, str]
    token: str
    admin_token: str
    home: Path


@pytest.fixture(scope="session")
def built() -> tuple[str, ...]:
    """Both stages packaged (reused from `make package` when newer than the sources)."""
    for stage in names.DEPLOY_STAGES:
        if not _fresh(stage) or not (names.build_dir(stage) / "deployment.zip").exists():
            done = subprocess.run([sys.executable, "-m", "infra.package", "--stage", stage],
                                  cwd=names.ROOT, capture_output=True, text=True, check=False)
            if done.returncode:
                pytest.fail(f"packaging {stage} failed:\n{done.stderr[-4000:]}")
    return names.DEPLOY_STAGES


@pytest.fixture(scope="session")
def bundles(built, tmp_path_factory) -> dict[str, artifact.Bundle]:
    return {stage: artifact.extract(stage, tmp_path_factory.mktemp(f"bundle-{stage}"))
            for stage in built}


@pytest.fixture(scope="session")
def run(tmp_path_factory) -> Iterator[Run]:
    port = localstack.free_port()
    emulator = Emulator(port=port).start()
    home = tmp_path_factory.mktemp("lambda-home")
    jwt_dir = home / "jwt"
    ensure_keys(jwt_dir)
    try:
        yield Run(endpoint=f"http://127.0.0.1:{port}",
                  parameters=artifact.stack_parameters(jwt_dir, localenv.ISSUER,
                                                       localenv.AUDIENCE),
                  token=make_token(USER, jwt_dir=jwt_dir),
                  admin_token=make_token("artifact-admin", admin=True, jwt_dir=jwt_dir),
                  home=home)
    finally:
        emulator.stop()

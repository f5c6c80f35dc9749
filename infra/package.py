"""`make package`: the deployable template and Lambda bundle of each stage, offline.

For each stage: render ``build/<stage>/merge.json`` (``infra.build_template``), then run
``chalice package --merge-template`` into ``build/<stage>/`` (``sam.json``, the functions'
``deployment.zip`` and the shared dependency layer ``layer-deployment.zip``, which
``infra.slim`` then strips of what Lambda never loads). Chalice needs a region but no
credentials; it builds the bundle from requirements.txt with pip (the package index is the
only network it uses) and caches the dependencies in .chalice/deployments/, so a second stage
or run takes seconds.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from infra import build_template, lambdas, names, slim, stack

LAYER_ZIP = "layer-deployment.zip"  # Chalice's name for the automatic layer's bundle
_SLIMMED: dict[str, Path] = {}  # sha256 of Chalice's layer zip -> its stripped copy


def runtime_version(sam: Path) -> str:
    """The Python version ("3.11") of the functions of a packaged template (one for all)."""
    resources = json.loads(sam.read_text())["Resources"].values()
    runtimes = {r["Properties"]["Runtime"] for r in resources
                if r.get("Type") == "AWS::Serverless::Function"}
    if len(runtimes) != 1:
        raise stack.StackError(f"{sam}: expected one runtime for every function, got {runtimes}")
    return runtimes.pop().removeprefix("python")


def package(stage: str) -> float:
    started = time.monotonic()
    out = names.build_dir(stage)
    for stale in ("sam.json", "deployment.zip", LAYER_ZIP):
        (out / stale).unlink(missing_ok=True)
    merge = build_template.write(stage, out / "merge.json")
    # app.py registers the console's local sign-in when STAGE=local: a shell that exported it
    # (after `make run`, say) must never put that route into a deployable template.
    inherited = {k: v for k, v in os.environ.items()
                 if k not in ("STAGE", "LOCAL_SIGNIN_KEY_FILE")}
    env = {**inherited, **lambdas.package_environment(stage)}
    env.setdefault("AWS_DEFAULT_REGION", env.get("AWS_REGION", "us-east-1"))
    subprocess.run(  # noqa: S603 - our interpreter, fixed arguments
        # The console script of this environment (chalice has no ``__main__``).
        [str(Path(sys.executable).parent / "chalice"), "package", "--stage", stage,
         "--merge-template", str(merge), str(out)],
        cwd=names.ROOT, env=env, check=True,
    )
    version = runtime_version(out / "sam.json")
    slim.slim_function(out / "deployment.zip", version)
    layer = out / LAYER_ZIP
    if layer.exists():
        # Every stage gets the same layer from Chalice: strip it once per run.
        key = hashlib.sha256(layer.read_bytes()).hexdigest()
        if key in _SLIMMED:
            shutil.copyfile(_SLIMMED[key], layer)
        else:
            slim.slim_layer(layer, version, slim.client_services())
            _SLIMMED[key] = layer
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--stage", choices=names.DEPLOY_STAGES, action="append",
                        help="default: every deployable stage")
    args = parser.parse_args()
    for stage in args.stage or names.DEPLOY_STAGES:
        try:
            seconds = package(stage)
        except stack.StackError as exc:
            sys.exit(f"infra: {exc}")
        except subprocess.CalledProcessError as exc:
            sys.exit(f"infra: chalice package failed for {stage} (exit {exc.returncode})")
        print(f"packaged {stage}: build/{stage}/sam.json, build/{stage}/deployment.zip "
              f"({seconds:.1f}s)", flush=True)


if __name__ == "__main__":
    main()

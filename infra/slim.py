"""Strip from the Lambda layer what Lambda never loads: `make package` runs it on each stage.

Chalice's ``automatic_layer`` puts every third-party dependency in one layer
(``build/<stage>/layer-deployment.zip``) shared by the stage's functions; this rewrites that zip
without:

* botocore's and boto3's models of services the code never creates a client for (about 16 MB
  of the 27 MB zipped bundle). The services kept are read from the source: every
  ``*.client("<service>")`` call in app.py and chalicelib/ (``aws.client("dynamodb")``, the
  Bedrock adapter's ``session.client("bedrock-runtime")``, ...), so a new client keeps its
  model without anyone editing a list; the artifact tests load each kept model from the
  built layer;
* the documentation examples of the kept services (``examples-1.json``), type stubs
  (``*.pyi``), ``__pycache__`` and bundled test suites.

The result is deterministic (same input, same bytes), so both stages' layers are identical
and an unchanged dependency set gives CloudFormation an unchanged layer.
"""

from __future__ import annotations

import ast
import re
import zipfile
from collections.abc import Iterable
from pathlib import Path

from infra import names

SITE = "python/lib/python{version}/site-packages/"
# botocore/data/<service>/<api version>/<file>, boto3/data/<service>/<api version>/<file>
_MODEL = re.compile(r"(?:botocore|boto3)/data/([a-z0-9-]+)/")
# botocore/data's own files (endpoints, partitions, retry and configuration defaults) do not
# match _MODEL, so every client keeps them.
_DROP_DIRS = ("__pycache__", "tests", "test")


def client_services(root: Path = names.ROOT) -> set[str]:
    """Every service name given as a literal to a ``.client(...)`` call in the app's code."""
    found: set[str] = set()
    files = [root / "app.py", *sorted((root / "chalicelib").rglob("*.py"))]
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "client"):
                continue
            arg = node.args[0] if node.args else next(
                (k.value for k in node.keywords if k.arg == "service_name"), None)
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                found.add(arg.value)
    return found


def keep(name: str, site: str, services: Iterable[str]) -> bool:
    """Whether the layer keeps the file ``name`` (a path inside the zip)."""
    if not name.startswith(site):
        return True
    rel = name[len(site):]
    parts = rel.split("/")
    if any(p in _DROP_DIRS for p in parts[:-1]) or rel.endswith((".pyi", ".pyc")):
        return False
    model = _MODEL.match(rel)
    if model:
        return model.group(1) in set(services) and not rel.endswith("/examples-1.json")
    return True


def slim_layer(path: Path, python_version: str, services: Iterable[str]) -> tuple[int, int]:
    """Rewrite the layer zip at ``path`` in place; (files before, files after)."""
    site = SITE.format(version=python_version)
    wanted = set(services)
    tmp = path.with_suffix(".slim.zip")
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(
            tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as dst:
        infos = src.infolist()
        kept = sorted((i for i in infos if keep(i.filename, site, wanted)),
                      key=lambda i: i.filename)
        if not any(i.filename.startswith(site) for i in infos):
            raise ValueError(f"{path}: no {site} inside; is this a Chalice layer?")
        for info in kept:
            out = zipfile.ZipInfo(info.filename, date_time=(1980, 1, 1, 0, 0, 0))
            out.external_attr = info.external_attr
            out.compress_type = zipfile.ZIP_DEFLATED
            dst.writestr(out, src.read(info), compresslevel=9)
    tmp.replace(path)
    return len(infos), len(kept)

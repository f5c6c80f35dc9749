"""Strip from the Lambda bundles what Lambda never loads: `make package` runs it on each stage.

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

The function's own bundle loses the ``__pycache__`` folders of the developer's tree (bytecode
of whatever Python ran locally). Both then get bytecode compiled for the runtime's Python,
hash-based and unchecked (``compiled``): Lambda cannot write a cache into its read-only code
folders, so shipping none means compiling every imported module on every cold start.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import py_compile
import re
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Iterable
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
    with zipfile.ZipFile(path) as src:
        if not any(i.filename.startswith(site) for i in src.infolist()):
            raise ValueError(f"{path}: no {site} inside; is this a Chalice layer?")
    def add(root: Path) -> None:
        # Bytecode for what the app imports (and what that imports): compiling all of the
        # layer would add 5 MB zipped for modules no handler loads.
        loaded = loaded_files([names.ROOT, root / site], _python(), app_imports())
        compiled(root, "/opt", python_version, only=loaded)

    return _rewrite(path, lambda name: keep(name, site, wanted), add)


def _python() -> str:
    """This interpreter without its virtualenv (the packaging runs the runtime's version)."""
    return str(getattr(sys, "_base_executable", sys.executable))


def slim_function(path: Path, python_version: str) -> tuple[int, int]:
    """The function's own bundle, its stale bytecode caches replaced by the runtime's."""
    return _rewrite(path, lambda name: "__pycache__/" not in name and
                    not name.endswith(".pyc"),
                    lambda root: compiled(root, "/var/task", python_version))


def _rewrite(path: Path, keep_name: Callable[[str], bool],
             add: Callable[[Path], None]) -> tuple[int, int]:
    """Rewrite the zip with the entries ``keep_name`` accepts, after ``add`` (given the
    extracted folder) wrote what it adds."""
    tmp = path.with_suffix(".slim.zip")
    with tempfile.TemporaryDirectory(prefix="slim-") as work, zipfile.ZipFile(path) as src:
        infos = src.infolist()
        kept = [i for i in infos if keep_name(i.filename)]
        modes = {i.filename: i.external_attr for i in kept}
        root = Path(work)
        src.extractall(root, members=kept)
        add(root)
        files = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED,
                             compresslevel=9) as dst:
            for name in files:
                out = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
                out.external_attr = modes.get(name, 0o644 << 16)
                out.compress_type = zipfile.ZIP_DEFLATED
                dst.writestr(out, (root / name).read_bytes(), compresslevel=9)
    tmp.replace(path)
    return len(infos), len(files)


def app_imports(root: Path = names.ROOT) -> set[str]:
    """Every module app.py and chalicelib/ import, at any depth (lazy imports included)."""
    found: set[str] = set()
    for path in [root / "app.py", *sorted((root / "chalicelib").rglob("*.py"))]:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                found.add(node.module)
                found.update(f"{node.module}.{a.name}" for a in node.names)
    return found


_LOADED = """
import importlib, json, sys
for name in sys.argv[1:]:
    try:
        importlib.import_module(name)
    except Exception:  # a name imported from a module, not a module; or an optional one
        pass
print(json.dumps(sorted({m.__file__ for m in list(sys.modules.values())
                         if getattr(m, "__file__", None)})))
"""


def loaded_files(paths: list[Path], python: str, modules: Iterable[str]) -> set[Path]:
    """The files a clean interpreter loads from ``paths`` importing ``modules``."""
    done = subprocess.run(  # noqa: S603 - the runtime's interpreter, our own script
        [python, "-S", "-P", "-c", _LOADED, *sorted(modules)],
        env={"PYTHONPATH": ":".join(map(str, paths)), "PYTHONDONTWRITEBYTECODE": "1",
             "PATH": "/usr/bin:/bin"}, capture_output=True, text=True, check=True, timeout=300)
    return {Path(f).resolve() for f in json.loads(done.stdout.strip().splitlines()[-1])}


def compiled(root: Path, lambda_dir: str, python_version: str,
             only: set[Path] | None = None) -> None:
    """Bytecode for the runtime's Python, hash-based and never checked against the source:
    Lambda's code folders are read-only, so without it every cold start compiles every module
    it imports (`make bench` measures the difference). ``only``: these files alone."""
    if f"{sys.version_info[0]}.{sys.version_info[1]}" != python_version:
        raise ValueError(f"bytecode for python{python_version} needs that interpreter; "
                         f"this is {sys.version_info[0]}.{sys.version_info[1]}")
    for source in sorted(root.rglob("*.py")):
        if only is not None and source.resolve() not in only:
            continue
        rel = source.relative_to(root)
        py_compile.compile(
            str(source), cfile=importlib.util.cache_from_source(str(source)),
            dfile=f"{lambda_dir}/{rel}", doraise=True,
            invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)

"""Size of the Lambda deployment package: `python -m devtools.package_size [ZIP] [--json]`,
or of a stage's function bundle and shared layer: `... --stage dev`.

Prints the zipped and unzipped size of ``build/<stage>/deployment.zip`` (run `make package`
first), the largest top-level entries, and fails if a test or tooling package slipped in.
Lambda's limits: 50 MB zipped for a direct upload, 250 MB unzipped.
"""

from __future__ import annotations

import argparse
import json
import sys
import zipfile
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_ZIP = ROOT / "build" / "dev" / "deployment.zip"
UNZIPPED_LIMIT = 250 * 1024 * 1024
ZIPPED_LIMIT = 50 * 1024 * 1024
# Top-level names of requirements-dev.txt packages (and their own dependencies) that must
# never ship in the Lambda bundle.
DEV_ONLY = frozenset({
    "pytest", "_pytest", "pluggy", "pytest_timeout", "moto", "ruff", "mypy", "mypyc",
    "mypy_extensions", "cfnlint", "samtranslator", "werkzeug", "flask", "responses",
    "docker", "tests", "devtools", "bench", "fakeprovider", "infra",
})


def top_level(z: zipfile.ZipFile) -> set[str]:
    return {i.filename.split("/", 1)[0] for i in z.infolist()}


def measure(path: Path) -> dict[str, object]:
    with zipfile.ZipFile(path) as z:
        infos = z.infolist()
        by_top: Counter[str] = Counter()
        for i in infos:
            by_top[i.filename.split("/", 1)[0]] += i.file_size
        unzipped = sum(i.file_size for i in infos)
        dev = sorted(top_level(z) & DEV_ONLY)
    return {
        "path": str(path),
        "zipped_bytes": path.stat().st_size,
        "unzipped_bytes": unzipped,
        "files": len(infos),
        "largest": by_top.most_common(8),
        "dev_only_packages": dev,
    }


def top_level_in_layer(z: zipfile.ZipFile) -> set[str]:
    """Top-level packages of a Lambda layer (python/lib/pythonX.Y/site-packages/<name>)."""
    return {parts[4] for parts in (i.filename.split("/") for i in z.infolist())
            if len(parts) > 4 and parts[:3] == ["python", "lib", parts[2]]}


def measure_stage(stage: str = "dev") -> dict[str, object]:
    """The function bundle and the shared layer of a packaged stage, and their total."""
    build = ROOT / "build" / stage
    function = measure(build / "deployment.zip")
    layer_path = build / "layer-deployment.zip"
    out: dict[str, object] = {"function": function}
    if layer_path.exists():
        layer = measure(layer_path)
        with zipfile.ZipFile(layer_path) as z:
            layer["dev_only_packages"] = sorted(top_level_in_layer(z) & DEV_ONLY)
            layer["largest"] = Counter({
                name: sum(i.file_size for i in z.infolist()
                          if i.filename.split("/")[4:5] == [name])
                for name in top_level_in_layer(z)}).most_common(8)
        out["layer"] = layer
    out["total_zipped_bytes"] = sum(int(m["zipped_bytes"]) for m in  # type: ignore[call-overload]
                                    (out["function"], out.get("layer"))
                                    if isinstance(m, dict))
    out["total_unzipped_bytes"] = sum(int(m["unzipped_bytes"]) for m in  # type: ignore[call-overload]
                                      (out["function"], out.get("layer"))
                                      if isinstance(m, dict))
    return out


def _mb(n: object) -> str:
    return f"{int(n) / 1024 / 1024:.1f} MB"  # type: ignore[call-overload]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("zip", nargs="?", type=Path, default=DEFAULT_ZIP)
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    parser.add_argument("--stage", help="the stage's function bundle and layer, as JSON")
    args = parser.parse_args()
    if args.stage:
        stage = measure_stage(args.stage)
        print(json.dumps(stage))
        if any(m.get("dev_only_packages") for m in (stage["function"], stage.get("layer"))
               if isinstance(m, dict)):
            sys.exit("test/tooling packages in the bundle or the layer")
        return
    if not args.zip.exists():
        sys.exit(f"{args.zip} does not exist: run `make package` first")
    m = measure(args.zip)
    if args.json:
        print(json.dumps(m))
    else:
        print(f"zipped:   {m['zipped_bytes']} bytes ({_mb(m['zipped_bytes'])}; "
              f"direct-upload limit {_mb(ZIPPED_LIMIT)})")
        print(f"unzipped: {m['unzipped_bytes']} bytes ({_mb(m['unzipped_bytes'])}; "
              f"limit {_mb(UNZIPPED_LIMIT)}), {m['files']} files")
        for name, size in m["largest"]:  # type: ignore[attr-defined]
            print(f"  {_mb(size):>9}  {name}")
    if m["dev_only_packages"]:
        sys.exit(f"test/tooling packages in the bundle: {m['dev_only_packages']}")
    if int(m["unzipped_bytes"]) > UNZIPPED_LIMIT:  # type: ignore[call-overload]
        sys.exit("the bundle exceeds Lambda's unzipped limit")


if __name__ == "__main__":
    main()

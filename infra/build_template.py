"""Render the merge template of a stage: `python -m infra.build_template --stage dev`.

`make package` runs this, then `chalice package --merge-template` (see ``infra.package``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from infra import lambdas, names, stack


def render(stage: str) -> dict[str, object]:
    return stack.build(stage, lambdas.load(stage))


def write(stage: str, out: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(render(stage), indent=2) + "\n")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--stage", choices=names.DEPLOY_STAGES, required=True)
    parser.add_argument("--out", type=Path, help="default: build/<stage>/merge.json")
    args = parser.parse_args()
    try:
        path = write(args.stage, args.out or names.build_dir(args.stage) / "merge.json")
    except stack.StackError as exc:
        sys.exit(f"infra: {exc}")
    print(path)


if __name__ == "__main__":
    main()

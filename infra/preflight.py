"""`make deploy`'s preflight, offline and without credentials:
`python -m infra.preflight --stage prod --params "AlarmEmail=... ConsoleCallbackUrls=..."`.

Before anything reaches AWS it checks, and stops on the first failed step:

1. the template is built (``build/<stage>/sam.json``, the bundle and the layer, newer than
   every source they are built from);
2. it is lint clean (cfn-lint) and matches the code (``infra.checks``);
3. the bundle is tested: the artifact scenario (``devtools.artifact``) runs every function
   from the extracted bundle and layer on the emulator;
4. the parameters are filled: each is one the template declares and matches its pattern, and
   the stage's console callback and logout URLs are set (https, ending in ``/console/``).
   The very first deploy cannot know the API's URL yet: ``--first-deploy`` lets it go
   without them (console sign-in stays off) and says so;

then prints what the stack will create.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

from infra import checks, names

SOURCES = ("app.py", "chalicelib/**/*", "infra/**/*.py", ".chalice/config.json",
           "requirements.txt")
BUILT = ("sam.json", "deployment.zip", "layer-deployment.zip")
CONSOLE_URL = re.compile(r"^https://[^/\s]+(/[^\s]*)?/console/$")
# Physical-name properties, per resource type, shown in the plan.
NAME_PROPERTY = {
    "AWS::DynamoDB::Table": "TableName", "AWS::SQS::Queue": "QueueName",
    "AWS::SNS::Topic": "TopicName", "AWS::Serverless::Function": "FunctionName",
    "AWS::Serverless::LayerVersion": "LayerName", "AWS::Cognito::UserPool": "UserPoolName",
    "AWS::Cognito::UserPoolClient": "ClientName", "AWS::Cognito::UserPoolGroup": "GroupName",
    "AWS::KMS::Alias": "AliasName", "AWS::Logs::LogGroup": "LogGroupName",
}


def parse_params(text: str) -> dict[str, str]:
    """``"A=1 B=x,y"`` (the PARAMS of `make deploy`) -> {"A": "1", "B": "x,y"}."""
    out = {}
    for item in text.split():
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"parameter {item!r} is not Name=value")
        out[key] = value
    return out


def built_problems(stage: str) -> list[str]:
    build = names.build_dir(stage)
    missing = [f for f in BUILT if not (build / f).exists()]
    if missing:
        return [f"build/{stage}/{', '.join(missing)} missing: run `make package`"]
    newest = max(p.stat().st_mtime for pattern in SOURCES for p in names.ROOT.glob(pattern)
                 if p.is_file() and "__pycache__" not in p.parts)
    stale = [f for f in BUILT if (build / f).stat().st_mtime < newest]
    return [f"build/{stage}/{f} is older than the sources: run `make package`" for f in stale]


def lint_problems(stage: str) -> list[str]:
    lint = Path(sys.executable).parent / "cfn-lint"
    done = subprocess.run([str(lint), str(names.build_dir(stage) / "sam.json")],  # noqa: S603
                          capture_output=True, text=True, check=False)
    out = [f"cfn-lint: {line}" for line in (done.stdout + done.stderr).splitlines() if line]
    if done.returncode and not out:
        out = [f"cfn-lint exited with {done.returncode}"]
    return out + checks.check_all(checks.load_template(stage), stage)


def parameter_problems(template: dict[str, Any], params: dict[str, str], *,
                       first_deploy: bool) -> list[str]:
    declared = template.get("Parameters", {})
    problems = [f"parameter {k} is not one of the template's: {', '.join(sorted(declared))}"
                for k in sorted(set(params) - set(declared))]
    for key, spec in sorted(declared.items()):
        value = params.get(key, spec.get("Default"))
        if value is None:
            problems.append(f"parameter {key} has no default: pass {key}=...")
        elif "AllowedPattern" in spec and not re.fullmatch(spec["AllowedPattern"], value):
            problems.append(f"parameter {key}={value!r} does not match "
                            f"{spec['AllowedPattern']}")
    identity_of_stack = not params.get("JwtIssuer")
    for key in ("ConsoleCallbackUrls", "ConsoleLogoutUrls"):
        urls = [u for u in params.get(key, "").split(",") if u]
        if not identity_of_stack:
            continue
        if not urls and not first_deploy:
            problems.append(
                f"{key} is not set: pass {key}=<EndpointURL>console/ (the EndpointURL output "
                "of the stack). On the very first deploy, before the URL exists, add "
                "FIRST_DEPLOY=1: the stack is created without console sign-in, then deploy "
                "again with the URLs (docs/deploy.md)")
        problems += [f"{key}: {u!r} is not an https URL ending in /console/" for u in urls
                     if not CONSOLE_URL.match(u)]
    return problems


def plan(template: dict[str, Any], params: dict[str, str]) -> list[str]:
    """One line per resource type: logical ids and physical names where the template fixes
    them; resources that exist only under a condition say which."""
    by_type: dict[str, list[str]] = defaultdict(list)
    for lid, res in sorted(template.get("Resources", {}).items()):
        props = res.get("Properties", {})
        name = props.get(NAME_PROPERTY.get(res.get("Type", ""), ""), "")
        label = f"{lid} ({name})" if isinstance(name, str) and name else lid
        if res.get("Condition"):
            label += f" [if {res['Condition']}]"
        by_type[res.get("Type", "?")].append(label)
    lines = [f"{kind} x{len(items)}: {', '.join(items)}" for kind, items in
             sorted(by_type.items())]
    given = ", ".join(f"{k}={v}" for k, v in sorted(params.items())) or "all defaults"
    return [*lines, f"parameters: {given}"]


def run(stage: str, params_text: str, *, first_deploy: bool, bundle: bool = True) -> int:
    try:
        params = parse_params(params_text)
    except ValueError as exc:
        print(f"preflight {stage}: {exc}", file=sys.stderr)
        return 2
    steps: list[tuple[str, Any]] = [
        ("template built", lambda: built_problems(stage)),
        ("lint clean, template matches the code", lambda: lint_problems(stage)),
        ("parameters filled", lambda: parameter_problems(
            checks.load_template(stage), params, first_deploy=first_deploy)),
    ]
    if bundle:
        from devtools import artifact

        steps.insert(2, ("bundle tested (every function from the extracted bundle + layer)",
                         lambda: artifact.check_stage(stage)))
    for title, step in steps:
        problems = step()
        print(f"preflight {stage}: {title}: {'FAILED' if problems else 'ok'}", flush=True)
        for p in problems:
            print(f"  - {p}", file=sys.stderr)
        if problems:
            return 1
    template = checks.load_template(stage)
    print(f"\nThe stack {names.stack_name(stage)} will hold:")
    for line in plan(template, params):
        print(f"  {line}")
    if first_deploy and not params.get("ConsoleCallbackUrls"):
        print("\nFirst deploy: console sign-in stays off until you deploy again with "
              "ConsoleCallbackUrls=<EndpointURL>console/ (printed below as EndpointURL).")
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stage", choices=names.DEPLOY_STAGES, required=True)
    parser.add_argument("--params", default="", help='"Name=value Name=value" (make PARAMS)')
    parser.add_argument("--first-deploy", action="store_true")
    parser.add_argument("--skip-bundle", action="store_true",
                        help="leave out the bundle run (it already ran in `make test`)")
    args = parser.parse_args()
    sys.exit(run(args.stage, args.params, first_deploy=args.first_deploy,
                 bundle=not args.skip_bundle))


if __name__ == "__main__":
    main()

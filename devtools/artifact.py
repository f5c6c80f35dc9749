"""Run the built Lambda bundle as Lambda would: the artifact tests, `make bench` and the
deploy preflight use this.

* ``extract``: unzip a stage's function bundle (``CodeUri``) into ``task/`` and every layer
  it names into ``opt/``, as Lambda does into ``/var/task`` and ``/opt``;
* ``interpreter``: the clean interpreter of the template's ``Runtime`` (``python3.11`` on the
  PATH), run with ``-S`` (no site-packages at all: nothing of this machine's or the project's
  environment) and ``-P``, and ``PYTHONPATH`` holding only what Lambda puts there;
* ``provision``: the template's tables, queues, topics and keys, created on the emulator from
  the template's own properties, so the functions' variables name real resources;
* ``Resolver``: the template's intrinsics (``Ref``, ``Fn::GetAtt``, ``Fn::Sub``, ``Fn::If``,
  conditions) evaluated against those resources and the stack parameters; a variable that
  references nothing is an error, never a silent empty string;
* ``invoke``: one fresh process per function (``devtools/lambda_runner.py``) that imports the
  handler once and answers a list of events.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RUNNER = ROOT / "devtools" / "lambda_runner.py"
EVENTS_DIR = ROOT / "tests" / "artifact" / "events"
ACCOUNT = "123456789012"  # moto's default account
REGION = "us-east-1"
FUNCTION_TYPES = ("AWS::Serverless::Function", "AWS::Lambda::Function")
LAYER_TYPES = ("AWS::Serverless::LayerVersion", "AWS::Lambda::LayerVersion")
# ELF e_machine of each Lambda architecture: a shared object for another one cannot load.
ELF_MACHINE = {"x86_64": 0x3E, "arm64": 0xB7}
WHEEL_ARCH = {"x86_64": "x86_64", "arm64": "aarch64"}


class ArtifactError(RuntimeError):
    """The bundle or the template is not what Lambda could run."""


NO_VALUE = object()  # AWS::NoValue: the variable is not set at all


@dataclass(frozen=True)
class Function:
    logical_id: str
    name: str
    handler: str
    runtime: str
    architecture: str
    memory: int
    timeout: int
    code_uri: str
    layers: tuple[str, ...]
    environment: dict[str, Any]


def load_template(stage: str) -> dict[str, Any]:
    return json.loads((ROOT / "build" / stage / "sam.json").read_text())


def functions(template: dict[str, Any]) -> list[Function]:
    out = []
    for lid, res in sorted(template.get("Resources", {}).items()):
        if res.get("Type") not in FUNCTION_TYPES:
            continue
        p = res["Properties"]
        layers = []
        for ref in p.get("Layers", []):
            if not (isinstance(ref, dict) and ref.get("Ref") in template["Resources"] and
                    template["Resources"][ref["Ref"]]["Type"] in LAYER_TYPES):
                raise ArtifactError(f"{lid}: layer {ref} is not a layer of the template")
            layers.append(ref["Ref"])
        arch = p.get("Architectures", ["x86_64"])
        out.append(Function(
            logical_id=lid, name=p.get("FunctionName", lid), handler=p["Handler"],
            runtime=p["Runtime"], architecture=arch[0], memory=int(p.get("MemorySize", 128)),
            timeout=int(p.get("Timeout", 3)), code_uri=p["CodeUri"], layers=tuple(layers),
            environment=p.get("Environment", {}).get("Variables", {})))
    return out


@dataclass
class Bundle:
    """An extracted stage: ``task`` (the function code) and ``opt`` (the layers)."""

    root: Path
    task: Path
    opt: Path
    runtime: str
    architecture: str

    @property
    def python_version(self) -> str:
        return self.runtime.removeprefix("python")

    def pythonpath(self) -> list[Path]:
        # Lambda's order: the function, then the layers' python/lib/<ver>/site-packages, python/.
        return [self.task, self.opt / "python" / "lib" / f"python{self.python_version}" /
                "site-packages", self.opt / "python"]


def _unzip(zip_path: Path, dest: Path) -> None:
    if not zip_path.exists():
        raise ArtifactError(f"{zip_path} does not exist: run `make package`")
    with zipfile.ZipFile(zip_path) as z:
        z.extractall(dest)


def extract(stage: str, dest: Path) -> Bundle:
    """Unzip the stage's bundle and layers into ``dest``; every function must share them."""
    template = load_template(stage)
    build = ROOT / "build" / stage
    fns = functions(template)
    if not fns:
        raise ArtifactError(f"{stage}: the template has no function")
    kinds = {(f.code_uri, f.layers, f.runtime, f.architecture) for f in fns}
    if len(kinds) != 1:
        raise ArtifactError(f"{stage}: functions differ in bundle, layers, runtime or "
                            f"architecture: {sorted(map(str, kinds))}")
    code_uri, layers, runtime, arch = kinds.pop()
    if arch not in ELF_MACHINE:
        raise ArtifactError(f"{stage}: unknown architecture {arch}")
    bundle = Bundle(dest, dest / "task", dest / "opt", runtime, arch)
    _unzip(build / code_uri, bundle.task)
    for layer in layers:
        _unzip(build / template["Resources"][layer]["Properties"]["ContentUri"], bundle.opt)
    return bundle


def interpreter(runtime: str) -> str:
    """The machine's interpreter of the template's runtime ("python3.11" -> its path)."""
    if not runtime.startswith("python"):
        raise ArtifactError(f"runtime {runtime} is not a Python runtime")
    found = shutil.which(runtime, path="/usr/local/bin:/usr/bin:/bin")
    base = getattr(sys, "_base_executable", "")
    if not found and sys.version_info[:2] == tuple(map(int, runtime[6:].split("."))) and base:
        found = base  # this virtualenv's own base interpreter is that version
    if not found:
        raise ArtifactError(f"{runtime} is not installed: the artifact tests run the bundle "
                            f"with the runtime's own Python version (apt-get install {runtime})")
    return found


def platform_problems(bundle: Bundle) -> list[str]:
    """Wheels built for another platform or Python, and shared objects of another machine."""
    problems = []
    want_machine = ELF_MACHINE[bundle.architecture]
    py = "cp" + bundle.python_version.replace(".", "")
    for wheel in sorted(bundle.root.rglob("*.dist-info/WHEEL")):
        tags = [line.split(":", 1)[1].strip() for line in wheel.read_text().splitlines()
                if line.startswith("Tag:")]
        ok = False
        for tag in tags:
            interp, abi, plat = tag.split("-", 2)
            plat_ok = plat == "any" or (plat.startswith("manylinux") and
                                        plat.endswith(WHEEL_ARCH[bundle.architecture]))
            py_ok = interp.startswith("py3") or interp == py or (
                abi == "abi3" and interp.startswith("cp3") and
                int(interp[3:]) <= int(py[3:]))
            ok |= plat_ok and py_ok
        if tags and not ok:
            problems.append(f"{wheel.parent.name}: built for {tags}, not {py} on "
                            f"{bundle.architecture} Linux")
    for so in sorted(bundle.root.rglob("*.so*")):
        if not so.is_file():
            continue
        head = so.read_bytes()[:20]
        if head[:4] != b"\x7fELF":
            problems.append(f"{so.relative_to(bundle.root)}: not a Linux shared object")
            continue
        machine = int.from_bytes(head[18:20], "little" if head[5] == 1 else "big")
        if machine != want_machine:
            problems.append(f"{so.relative_to(bundle.root)}: machine {machine:#x}, the "
                            f"function runs on {bundle.architecture}")
    return problems


# ---------------------------------------------------------------------------- the stack


@dataclass
class Physical:
    """What a logical id resolves to on the emulator: Ref and attributes."""

    ref: str
    attrs: dict[str, str] = field(default_factory=dict)


def provision(template: dict[str, Any], endpoint: str) -> dict[str, Physical]:
    """Create the template's tables, queues, topics and KMS keys on the emulator."""
    import boto3

    session = boto3.session.Session(aws_access_key_id="testing",
                                    aws_secret_access_key="testing", region_name=REGION)

    def client(service: str) -> Any:
        return session.client(service, endpoint_url=endpoint)  # type: ignore[call-overload]

    out: dict[str, Physical] = {}
    resources = template["Resources"]
    ddb, sqs, sns, kms = client("dynamodb"), client("sqs"), client("sns"), client("kms")
    for lid, r in resources.items():
        p, kind = r.get("Properties", {}), r.get("Type")
        if kind == "AWS::DynamoDB::Table":
            args = {k: p[k] for k in ("TableName", "AttributeDefinitions", "KeySchema",
                                      "GlobalSecondaryIndexes") if k in p}
            arn = ddb.create_table(BillingMode="PAY_PER_REQUEST", **args)[
                "TableDescription"]["TableArn"]
            ttl = p.get("TimeToLiveSpecification")
            if ttl:
                ddb.update_time_to_live(TableName=p["TableName"], TimeToLiveSpecification=ttl)
            out[lid] = Physical(p["TableName"], {"Arn": arn})
        elif kind == "AWS::KMS::Key":
            meta = kms.create_key(Description=str(p.get("Description", lid)))["KeyMetadata"]
            out[lid] = Physical(meta["KeyId"], {"Arn": meta["Arn"]})
        elif kind == "AWS::SNS::Topic":
            arn = sns.create_topic(Name=p["TopicName"])["TopicArn"]
            out[lid] = Physical(arn, {"TopicName": p["TopicName"]})
    for lid, r in resources.items():  # queues after keys; the redrive target first
        p = r.get("Properties", {})
        if r.get("Type") == "AWS::SQS::Queue":
            url = sqs.create_queue(QueueName=p["QueueName"])["QueueUrl"]
            arn = f"arn:aws:sqs:{REGION}:{ACCOUNT}:{p['QueueName']}"
            out[lid] = Physical(url, {"Arn": arn, "QueueName": p["QueueName"],
                                      "QueueUrl": url})
    return out


class Resolver:
    """CloudFormation's intrinsics, for the values of functions' environment variables."""

    def __init__(self, template: dict[str, Any], physical: dict[str, Physical],
                 parameters: dict[str, str]) -> None:
        self.template = template
        self.physical = physical
        self.params = {k: str(parameters.get(k, v.get("Default", "")))
                       for k, v in template.get("Parameters", {}).items()}
        unknown = set(parameters) - set(self.params)
        if unknown:
            raise ArtifactError(f"parameters the template does not declare: {sorted(unknown)}")
        self.pseudo = {"AWS::Region": REGION, "AWS::AccountId": ACCOUNT,
                       "AWS::Partition": "aws", "AWS::StackName": "artifact",
                       "AWS::URLSuffix": "amazonaws.com"}

    def ref(self, name: str) -> Any:
        if name in self.params:
            if self.template["Parameters"][name].get("Type") == "CommaDelimitedList":
                return self.params[name].split(",")
            return self.params[name]
        if name in self.pseudo:
            return self.pseudo[name]
        if name in self.physical:
            return self.physical[name].ref
        if name in self.template.get("Resources", {}):
            raise ArtifactError(f"Ref {name}: a {self.template['Resources'][name]['Type']} "
                                "the artifact tests do not emulate")
        raise ArtifactError(f"Ref {name} names nothing in the template")

    def getatt(self, name: str, attr: str) -> str:
        if name not in self.template.get("Resources", {}):
            raise ArtifactError(f"Fn::GetAtt {name}.{attr} names nothing in the template")
        phys = self.physical.get(name)
        if phys is None or attr not in phys.attrs:
            raise ArtifactError(f"Fn::GetAtt {name}.{attr} is not emulated")
        return phys.attrs[attr]

    def condition(self, name: str) -> bool:
        conditions = self.template.get("Conditions", {})
        if name not in conditions:
            raise ArtifactError(f"condition {name} names nothing in the template")
        return bool(self.value(conditions[name]))

    def value(self, node: Any) -> Any:
        if isinstance(node, (str, int, float, bool)):
            return node
        if isinstance(node, list):
            return [self.value(v) for v in node]
        if not isinstance(node, dict) or len(node) != 1:
            raise ArtifactError(f"not a value CloudFormation resolves: {node!r}")
        (fn, arg), = node.items()
        if fn == "Ref":
            return NO_VALUE if arg == "AWS::NoValue" else self.ref(arg)
        if fn == "Fn::GetAtt":
            name, attr = arg if isinstance(arg, list) else arg.split(".", 1)
            return self.getatt(name, attr)
        if fn == "Fn::If":
            cond, yes, no = arg
            return self.value(yes if self.condition(cond) else no)
        if fn == "Fn::Equals":
            return self.value(arg[0]) == self.value(arg[1])
        if fn == "Fn::Not":
            return not self.value(arg[0])
        if fn == "Fn::And":
            return all(self.value(a) for a in arg)
        if fn == "Fn::Or":
            return any(self.value(a) for a in arg)
        if fn == "Condition":
            return self.condition(arg)
        if fn == "Fn::Sub":
            return self.sub(arg)
        if fn == "Fn::Join":
            return str(arg[0]).join(str(self.value(v)) for v in self.value(arg[1]))
        raise ArtifactError(f"intrinsic {fn} is not supported by the artifact tests")

    def sub(self, text: str) -> str:
        def one(m: re.Match[str]) -> str:
            name = m.group(1)
            if "." in name and name not in self.pseudo:
                res, attr = name.split(".", 1)
                return self.getatt(res, attr)
            return self.ref(name)

        return re.sub(r"\$\{([A-Za-z0-9:.]+)\}", one, text)

    def environment(self, fn: Function) -> dict[str, str]:
        out = {}
        for var, raw in fn.environment.items():
            try:
                value = self.value(raw)
            except ArtifactError as exc:
                raise ArtifactError(f"{fn.logical_id}: variable {var}: {exc}") from None
            if value is NO_VALUE:
                continue
            out[var] = str(value)
        return out


def lambda_environment(fn: Function, bundle: Bundle, endpoint: str,
                       stack_env: dict[str, str], home: Path) -> dict[str, str]:
    """Everything the process gets: Lambda's own variables, the template's, the endpoint."""
    path = ":".join(str(p) for p in bundle.pythonpath())
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "en_US.UTF-8", "TZ": ":UTC",
        "HOME": str(home), "PYTHONPATH": path,
        "LAMBDA_TASK_ROOT": str(bundle.task), "LAMBDA_RUNTIME_DIR": str(home),
        "_HANDLER": fn.handler, "AWS_EXECUTION_ENV": f"AWS_Lambda_{fn.runtime}",
        "AWS_LAMBDA_FUNCTION_NAME": fn.name, "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(fn.memory),
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{fn.name}",
        "AWS_LAMBDA_LOG_STREAM_NAME": "artifact-test",
        "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
        "AWS_XRAY_CONTEXT_MISSING": "LOG_ERROR", "AWS_XRAY_DAEMON_ADDRESS": "127.0.0.1:2000",
        "AWS_REGION": REGION, "AWS_DEFAULT_REGION": REGION,
        # The role's credentials, as Lambda passes them; moto accepts any.
        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        # The one addition to what Lambda sets: the standard endpoint variable.
        "AWS_ENDPOINT_URL": endpoint, "NO_PROXY": "127.0.0.1,localhost",
        # /var/task and /opt are read-only in Lambda: no bytecode cache is ever written there
        # (without this, the first run here would warm every later one).
        "PYTHONDONTWRITEBYTECODE": "1",
        **stack_env,
    }


@dataclass
class Report:
    answers: list[dict[str, Any]]
    import_error: str | None
    handler_error: str | None
    foreign_modules: list[str]
    service_errors: dict[str, str]
    started: float  # wall-clock time just before the process was spawned
    stderr: str
    returncode: int

    def problems(self) -> list[str]:
        out = []
        if self.returncode:
            out.append(f"the process exited with {self.returncode}: {self.stderr[-2000:]}")
        if self.import_error:
            out.append(f"the handler's module does not import:\n{self.import_error}")
        if self.handler_error:
            out.append(self.handler_error)
        out += [f"loaded from outside the bundle: {m}" for m in self.foreign_modules]
        out += [f"botocore model {s} does not load: {e}" for s, e in
                self.service_errors.items()]
        out += [f"event {i} raised:\n{a['error']}" for i, a in enumerate(self.answers)
                if "error" in a]
        return out


def invoke(fn: Function, events: list[Any], env: dict[str, str], *, python: str,
           roots: list[Path], services: list[str] = (), timeout: float = 120,  # type: ignore[assignment]
           source_tree: bool = False) -> Report:
    """One fresh process running ``fn``'s handler on ``events``.

    ``source_tree``: run the same handler from the source tree with the project's
    virtualenv instead (the reference the bundle's answers are compared with)."""
    with tempfile.TemporaryDirectory(prefix="lambda-run-") as tmp:
        spec, out = Path(tmp) / "spec.json", Path(tmp) / "out.json"
        spec.write_text(json.dumps({
            "handler": fn.handler, "events": events, "function_name": fn.name,
            "memory": fn.memory, "timeout": fn.timeout,
            "roots": [] if source_tree else [str(r) for r in roots],
            "services": list(services)}))
        if source_tree:
            cmd = [sys.executable, "-P", str(RUNNER), str(spec), str(out)]
            env = {**env, "PYTHONPATH": str(ROOT)}
        else:
            cmd = [python, "-S", "-P", str(RUNNER), str(spec), str(out)]
        started = __import__("time").time()
        done = subprocess.run(cmd, env=env, cwd=tmp, capture_output=True, text=True,
                              timeout=timeout, check=False)
        raw = json.loads(out.read_text()) if out.exists() else {
            "answers": [], "import_error": None, "handler_error": None,
            "foreign_modules": [], "service_errors": {}}
    return Report(started=started, stderr=done.stderr + done.stdout[-4000:],
                  returncode=done.returncode, **raw)


def load_event(name: str, **values: str) -> Any:
    """A fixture of tests/artifact/events with ``{{name}}`` placeholders filled in."""
    text = (EVENTS_DIR / f"{name}.json").read_text()
    for key, value in values.items():
        text = text.replace("{{" + key + "}}", value)
    if "{{" in text:
        raise ArtifactError(f"event {name}: unfilled placeholder in {text[:200]}")
    return json.loads(text)


# ---------------------------------------------------------------------------- a stage's run

POISON = "7b0ee2d8-0002-4c2e-9a8e-0f5c1d2e3f02"  # the unparsable message of the SQS batch
API_EVENTS = ("apigw_create_connection", "apigw_list_connections",
              "apigw_get_missing_connection", "apigw_list_without_token",
              "apigw_create_malformed_body")


def api_event(method: str, path: str, token: str, body: Any = None) -> Any:
    """A REST proxy event for a route without path parameters, shaped like the fixtures."""
    event = load_event("apigw_create_connection", token=token)
    event.update(path=path, resource=path, httpMethod=method,
                 body=None if body is None else json.dumps(body))
    event["requestContext"].update(resourcePath=path, httpMethod=method, path=f"/api{path}")
    return event


def provider_events(admin_token: str) -> list[Any]:
    """The provider catalogue, created the way an operator does after a first deploy:
    POST /providers as an admin, one per seed provider (`make seed-providers`)."""
    from chalicelib.services.catalogue import SEED_PROVIDERS

    return [api_event("POST", "/providers", admin_token, p) for p in SEED_PROVIDERS]


def trigger(template: dict[str, Any], fn: Function) -> str:
    """How AWS calls ``fn``: "api", "schedule" or "sqs" (from the template's wiring)."""
    props = template["Resources"][fn.logical_id]["Properties"]
    kinds = {e.get("Type") for e in props.get("Events", {}).values()}
    if kinds == {"Schedule"}:
        return "schedule"
    if kinds == {"SQS"}:
        return "sqs"
    if not kinds and any(r.get("Type") == "AWS::Serverless::Api" and
                         f"{fn.logical_id}.Arn" in json.dumps(r)
                         for r in template["Resources"].values()):
        return "api"
    raise ArtifactError(f"{fn.logical_id}: no fixture events for a function triggered by "
                        f"{sorted(map(str, kinds)) or 'nothing'}")


def events_for(kind: str, *, token: str, work_queue: str) -> list[Any]:
    if kind == "api":
        return [load_event(n, token=token) for n in API_EVENTS]
    if kind == "schedule":
        return [load_event("eventbridge_scheduled")]
    return [load_event("sqs_batch_with_poison", work_queue=work_queue)]


def stack_parameters(jwt_dir: Path, issuer: str, audience: str) -> dict[str, str]:
    """The stack parameters of the run: an existing issuer (a local key pair) instead of the
    Cognito pool, the only resource the emulator cannot stand in for."""
    return {"JwtIssuer": issuer, "JwtAudience": audience,
            "JwksUrl": (jwt_dir / "jwks.json").resolve().as_uri()}


def reset_emulator(endpoint: str) -> None:
    import urllib.request

    req = urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST")
    with urllib.request.urlopen(req, timeout=30):
        pass


@dataclass
class Stage:
    """A stage ready to run on the emulator: its functions by trigger, their environments."""

    functions: dict[str, Function]
    environments: dict[str, dict[str, str]]
    work_queue: str
    python: str
    roots: list[Path]

    def events(self, kind: str, token: str) -> list[Any]:
        return events_for(kind, token=token, work_queue=self.work_queue)


def prepare_stage(stage: str, bundle: Bundle, endpoint: str, parameters: dict[str, str],
                  home: Path, admin_token: str) -> Stage:
    """Reset the emulator, create the template's resources, and the provider catalogue
    through the bundle's own API (an admin's POST /providers)."""
    template = load_template(stage)
    reset_emulator(endpoint)
    resolver = Resolver(template, provision(template, endpoint), parameters)
    fns = {trigger(template, fn): fn for fn in functions(template)}
    missing = {"api", "schedule", "sqs"} - set(fns)
    if missing:
        raise ArtifactError(f"{stage}: no function for {sorted(missing)}")
    envs = {kind: lambda_environment(fn, bundle, endpoint, resolver.environment(fn), home)
            for kind, fn in fns.items()}
    python, roots = interpreter(bundle.runtime), [bundle.task, bundle.opt]
    seeded = invoke(fns["api"], provider_events(admin_token), envs["api"], python=python,
                    roots=roots)
    statuses = [a.get("result", {}).get("statusCode") for a in seeded.answers]
    if seeded.problems() or set(statuses) != {201}:
        errors = sorted(set(re.findall(r"\b(\w+(?:Error|Exception): [^\"\\]{0,300})",
                                       seeded.stderr)))[:5]
        raise ArtifactError(f"{stage}: seeding the providers through POST /providers "
                            f"answered {statuses}; {seeded.problems() or errors}")
    work_queue = next(p.attrs["QueueName"] for lid, p in resolver.physical.items()
                      if template["Resources"][lid]["Type"] == "AWS::SQS::Queue" and
                      "RedrivePolicy" in template["Resources"][lid]["Properties"])
    return Stage(fns, envs, work_queue, python, roots)


def run_stage(stage: str, bundle: Bundle, endpoint: str, parameters: dict[str, str],
              token: str, home: Path, *, admin_token: str, source_tree: bool = False,
              services: list[str] = ()) -> dict[str, Report]:  # type: ignore[assignment]
    """Every function of the stage on its fixture events, on a freshly reset emulator:
    {trigger kind: report}. The API runs first (its connection is then due for the
    daily run), then the schedule, then the queue batch."""
    ready = prepare_stage(stage, bundle, endpoint, parameters, home, admin_token)
    return {kind: invoke(ready.functions[kind], ready.events(kind, token),
                         ready.environments[kind], python=ready.python, roots=ready.roots,
                         services=services if kind == "api" else [], source_tree=source_tree)
            for kind in ("api", "schedule", "sqs")}


def scenario_problems(reports: dict[str, Report]) -> list[str]:
    """Everything that differs from what the fixtures must produce, as readable lines."""
    problems = [f"{kind}: {p}" for kind, r in reports.items() for p in r.problems()]
    if problems:
        return problems
    expected = {"api": [201, 200, 404, 401, 400]}
    for kind, report in reports.items():
        got = [a["result"].get("statusCode") for a in report.answers] if kind == "api" else []
        if got != expected.get(kind, []):
            problems.append(f"{kind}: status codes {got}, expected {expected[kind]}: "
                            f"{report.stderr[-1500:]}")
    batch = reports["sqs"].answers[0]["result"] if reports["sqs"].answers else None
    if batch != {"batchItemFailures": [{"itemIdentifier": POISON}]}:
        problems.append(f"sqs: {batch}, expected only the poison message to fail")
    return problems


def check_stage(stage: str) -> list[str]:
    """The artifact tests' scenario on one stage, in one call (`make deploy`'s preflight):
    extract, run every function from the bundle on the emulator, report what fails."""
    from devtools import localenv, localstack
    from devtools.emulator import Emulator
    from devtools.token import ensure_keys, make_token

    port = localstack.free_port()
    emulator = Emulator(port=port).start()
    try:
        with tempfile.TemporaryDirectory(prefix=f"preflight-{stage}-") as tmp:
            home = Path(tmp)
            bundle = extract(stage, home / "bundle")
            problems = platform_problems(bundle)
            jwt_dir = home / "jwt"
            ensure_keys(jwt_dir)
            reports = run_stage(stage, bundle, f"http://127.0.0.1:{port}",
                                stack_parameters(jwt_dir, localenv.ISSUER, localenv.AUDIENCE),
                                make_token("preflight", jwt_dir=jwt_dir), home,
                                admin_token=make_token("preflight-admin", admin=True,
                                                       jwt_dir=jwt_dir))
            return problems + scenario_problems(reports)
    except ArtifactError as exc:
        return [str(exc)]
    finally:
        emulator.stop()

"""What would be deployed, run as Lambda runs it.

Each stage's ``deployment.zip`` and layer are unzipped into an empty folder and every
function of ``build/<stage>/sam.json`` runs in a fresh process of the runtime's own Python
(``-S``: no site-packages; ``PYTHONPATH`` = the bundle and the layer only), with the
handler, environment and runtime read from the template and the events AWS sends
(tests/artifact/events). The answers must be the source tree's.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
from typing import Any

import pytest

from devtools import artifact
from infra import names, slim

pytestmark = pytest.mark.artifact

STAGES = names.DEPLOY_STAGES
CANARY = "sk-artifact-canary-0123456789abcdef"  # the key inside apigw_create_connection.json
POISON = artifact.POISON


def normalised(report: artifact.Report) -> list[Any]:
    """Answers without what differs from run to run (ids, times, durations)."""
    text = json.dumps([a.get("result") for a in report.answers], sort_keys=True)
    text = re.sub(r"conn_[A-Za-z0-9_-]{16}", "conn_*", text)
    text = re.sub(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", "<time>", text)
    text = re.sub(r'\\?"duration_ms\\?": \d+', '"duration_ms": 0', text)
    return list(json.loads(text))


def api_answer(report: artifact.Report, i: int) -> tuple[int, Any]:
    result = report.answers[i]["result"]
    return result["statusCode"], json.loads(result["body"])


@pytest.fixture(scope="module")
def results(bundles, run) -> dict[str, dict[str, dict[str, artifact.Report]]]:
    """{stage: {"bundle"|"source": {trigger: report}}}: each on a freshly reset emulator."""
    out: dict[str, dict[str, dict[str, artifact.Report]]] = {}
    services = sorted(slim.client_services())
    for stage, bundle in bundles.items():
        out[stage] = {
            side: artifact.run_stage(stage, bundle, run.endpoint, run.parameters, run.token,
                                     run.home, admin_token=run.admin_token,
                                     source_tree=side == "source",
                                     services=services)
            for side in ("bundle", "source")}
    return out


@pytest.mark.parametrize("stage", STAGES)
def test_every_function_runs_from_the_bundle_alone(results, stage):
    # Given the stage's functions run from the extracted bundle with a clean interpreter
    reports = results[stage]["bundle"]
    # Then each imported its handler, answered every event, loaded nothing from outside the
    # bundle and layer (or the standard library), and every kept SDK model loads
    assert set(reports) == {"api", "schedule", "sqs"}
    assert artifact.scenario_problems(reports) == []
    for kind, report in reports.items():
        assert len(report.answers) == len(artifact.events_for(kind, token="t",
                                                               work_queue="q")), kind


@pytest.mark.parametrize("stage", STAGES)
def test_the_api_answers_aws_events_as_the_service_defines(results, stage):
    api = results[stage]["bundle"]["api"]
    # create, list, unknown id, no token, malformed body (artifact.API_EVENTS)
    status, created = api_answer(api, 0)
    assert (status, created["name"], created["status"]) == (201, "Artifact OpenAI", "untested")
    status, listed = api_answer(api, 1)
    assert status == 200 and [c["id"] for c in listed["items"]] == [created["id"]]
    status, missing = api_answer(api, 2)
    assert (status, missing["error"]["code"]) == (404, "not_found")
    status, anonymous = api_answer(api, 3)
    assert (status, anonymous["error"]["code"]) == (401, "missing_token")
    status, malformed = api_answer(api, 4)
    assert (status, malformed["error"]["field"]) == (400, "body")
    # and the secret sent in the create never comes back or reaches a log line
    assert CANARY not in json.dumps(api.answers) + api.stderr


@pytest.mark.parametrize("stage", STAGES)
def test_the_schedule_queues_the_new_connection_and_the_worker_reports_the_poison(results,
                                                                                  stage):
    reports = results[stage]["bundle"]
    daily = reports["schedule"].answers[0]["result"]
    assert (daily["connections_queued"], daily["messages"]) == (1, 1)
    batch = reports["sqs"].answers[0]["result"]
    assert batch == {"batchItemFailures": [{"itemIdentifier": POISON}]}


@pytest.mark.parametrize("stage", STAGES)
def test_the_bundle_answers_as_the_source_tree_does(results, stage):
    for kind in ("api", "schedule", "sqs"):
        source = results[stage]["source"][kind]
        assert source.problems() == [], kind
        assert normalised(results[stage]["bundle"][kind]) == normalised(source), kind


@pytest.mark.parametrize("stage", STAGES)
def test_the_layer_holds_only_wheels_for_the_runtime_and_architecture(bundles, stage):
    bundle = bundles[stage]
    assert bundle.architecture == "x86_64"
    assert artifact.platform_problems(bundle) == []


# The checks catch what they claim to.


def test_a_handler_that_names_nothing_fails(bundles, run):
    bundle = bundles["dev"]
    template = artifact.load_template("dev")
    fn = next(f for f in artifact.functions(template) if f.handler == "app.app")
    report = artifact.invoke(dataclasses.replace(fn, handler="app.no_such_handler"), [],
                             {"PYTHONPATH": ":".join(map(str, bundle.pythonpath())),
                              "PATH": "/usr/bin:/bin"},
                             python=artifact.interpreter(bundle.runtime),
                             roots=[bundle.task, bundle.opt])
    assert any("no callable 'no_such_handler'" in p for p in report.problems())


def test_a_variable_that_references_nothing_fails(run):
    template = artifact.load_template("dev")
    fn = artifact.functions(template)[0]
    broken = dataclasses.replace(fn, environment={"WORK_QUEUE_URL": {"Ref": "NoSuchQueue"}})
    resolver = artifact.Resolver(template, {}, run.parameters)
    with pytest.raises(artifact.ArtifactError, match="WORK_QUEUE_URL: Ref NoSuchQueue names "
                                                     "nothing"):
        resolver.environment(broken)


def test_a_module_missing_from_the_layer_fails(bundles, run, tmp_path):
    # Given a copy of the bundle whose layer lost one dependency (PyJWT)
    source = bundles["dev"]
    shutil.copytree(source.root, tmp_path / "b", symlinks=True)
    bundle = dataclasses.replace(source, root=tmp_path / "b", task=tmp_path / "b" / "task",
                                 opt=tmp_path / "b" / "opt")
    shutil.rmtree(bundle.pythonpath()[1] / "jwt")
    # When the stage runs from it, then its first request (an admin's, seeding the
    # providers) already fails, and the failure says why
    with pytest.raises(artifact.ArtifactError, match="No module named 'jwt'"):
        artifact.run_stage("dev", bundle, run.endpoint, run.parameters, run.token, run.home,
                           admin_token=run.admin_token)


def test_a_shared_object_for_another_architecture_fails(bundles, tmp_path):
    bundle = dataclasses.replace(bundles["dev"], root=tmp_path)
    elf = bytearray(64)
    elf[:6] = b"\x7fELF\x02\x01"
    elf[18:20] = (0xB7).to_bytes(2, "little")  # aarch64
    (tmp_path / "_speedups.cpython-311-aarch64-linux-gnu.so").write_bytes(bytes(elf))
    wheel = tmp_path / "fast-1.0.dist-info"
    wheel.mkdir()
    (wheel / "WHEEL").write_text("Wheel-Version: 1.0\nTag: cp311-cp311-manylinux2014_aarch64\n")
    problems = artifact.platform_problems(bundle)
    assert any("machine 0xb7" in p for p in problems)
    assert any("fast-1.0.dist-info: built for" in p for p in problems)


@pytest.mark.parametrize("stage", STAGES)
def test_the_function_bundle_carries_every_file_of_the_app(bundles, stage):
    # Given the app's own files (code, and static files such as the console's)
    root = names.ROOT
    wanted = {"app.py", *(str(p.relative_to(root)) for p in (root / "chalicelib").rglob("*")
                          if p.is_file() and "__pycache__" not in p.parts)}
    task = bundles[stage].task
    shipped = {str(p.relative_to(task)) for p in task.rglob("*") if p.is_file()}
    # Then each is in the function's bundle, and no dependency is (they are the layer's)
    assert wanted - shipped == set()
    assert {p.split("/", 1)[0] for p in shipped} <= {"app.py", "chalicelib", "chalice",
                                                     "__pycache__"}  # app.py's bytecode

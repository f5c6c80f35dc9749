"""The Lambda functions `chalice package` emits for a stage, read from Chalice itself.

Chalice's own application graph (the one `chalice package` renders) gives each function's
logical id, log group and event sources, so the merge template names exactly the resources
Chalice will emit; the app object gives the Python functions each Lambda can run (the roots
of ``codescan``'s reachability).
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from infra import names

# Chalice's middleware event types per decorator kind (chalice.app._MIDDLEWARE_MAPPING).
_EVENT_TYPES = {"scheduled_event": "scheduled", "sqs_event": "sqs", "sns_event": "sns",
                "cloudwatch_event": "cloudwatch", "s3_event": "s3", "kinesis_event": "kinesis",
                "dynamodb_event": "dynamodb"}


@dataclass(frozen=True)
class EventSource:
    kind: str  # chalice model resource_type: "scheduled_event", "sqs_event", ...
    cfn_name: str  # key under the function's Properties.Events
    queue: str | None = None  # sqs: the name (or ARN) given to @app.on_sqs_message
    schedule: str | None = None


@dataclass(frozen=True)
class LambdaInfo:
    name: str  # Chalice's resource name: "api_handler", "run_daily", ...
    cfn_name: str  # logical id in the packaged template
    handler: str
    timeout: int
    memory_size: int
    xray: bool
    log_group_cfn_name: str | None
    events: tuple[EventSource, ...]
    roots: tuple[str, ...]  # fully qualified Python functions this Lambda may run

    @property
    def is_api(self) -> bool:
        return self.handler == "app.app"

    def physical_name(self, stage: str) -> str:
        return names.function_name(stage, self.name)


def package_environment(stage: str) -> dict[str, str]:
    """Variables app.py reads at import time when Chalice packages it (schedule, queue)."""
    config = stage_config(stage)
    env = {"WORK_QUEUE_NAME": names.work_queue_name(stage)}
    schedule = config.get("environment_variables", {}).get("DAILY_SCHEDULE")
    if schedule:
        env["DAILY_SCHEDULE"] = schedule
    return env


def stage_config(stage: str) -> dict[str, Any]:
    import json

    raw = json.loads((names.ROOT / ".chalice" / "config.json").read_text())
    merged = {k: v for k, v in raw.items() if k != "stages"}
    stage_raw = raw.get("stages", {}).get(stage, {})
    merged["environment_variables"] = {**raw.get("environment_variables", {}),
                                       **stage_raw.get("environment_variables", {})}
    merged.update({k: v for k, v in stage_raw.items() if k != "environment_variables"})
    return merged


def _qualified(fn: Callable[..., Any]) -> str:
    fn = inspect.unwrap(fn)
    qualname = getattr(fn, "__qualname__", getattr(fn, "__name__", "?"))
    # A closure runs inside its outermost function; codescan attributes its body there.
    qualname = qualname.split(".<locals>", 1)[0]
    return f"{fn.__module__}.{qualname}"


def _middleware(app: Any, event_types: Iterable[str]) -> list[str]:
    wanted = {"all", *event_types}
    return [_qualified(f) for f, kind in app.middleware_handlers if kind in wanted]


def _api_roots(app: Any) -> list[str]:
    roots = [_qualified(entry.view_function)
             for methods in app.routes.values() for entry in methods.values()]
    return roots + _middleware(app, ["http"])


def _event_roots(app: Any, name: str, kinds: Iterable[str]) -> list[str]:
    handler = app.handler_map[name]
    func = getattr(handler, "func", handler)
    return [_qualified(func), *_middleware(app, [_EVENT_TYPES.get(k, k) for k in kinds])]


def load(stage: str) -> list[LambdaInfo]:
    """The Lambda functions of ``stage``, as `chalice package` will emit them."""
    from chalice.cli.factory import CLIFactory
    from chalice.deploy import models
    from chalice.deploy.appgraph import ApplicationGraphBuilder, DependencyBuilder
    from chalice.utils import to_cfn_resource_name

    for key, value in package_environment(stage).items():
        os.environ.setdefault(key, value)
    factory = CLIFactory(project_dir=str(names.ROOT))
    config = factory.create_config_obj(chalice_stage_name=stage)
    app = config.chalice_app
    graph = ApplicationGraphBuilder().build(config, stage)
    resources = DependencyBuilder().build_dependencies(graph)

    events: dict[str, list[EventSource]] = {}
    api_function: str | None = None
    for r in resources:
        if isinstance(r, models.RestAPI):
            api_function = r.lambda_function.resource_name
        elif isinstance(r, models.SQSEventSource):
            queue = r.queue.arn if isinstance(r.queue, models.QueueARN) else r.queue
            events.setdefault(r.lambda_function.resource_name, []).append(
                EventSource(r.resource_type, to_cfn_resource_name(r.resource_name), queue=queue))
        elif isinstance(r, models.ScheduledEvent):
            events.setdefault(r.lambda_function.resource_name, []).append(
                EventSource(r.resource_type, to_cfn_resource_name(r.resource_name),
                            schedule=r.schedule_expression))
        elif isinstance(r, models.FunctionEventSubscriber):
            events.setdefault(r.lambda_function.resource_name, []).append(
                EventSource(r.resource_type, to_cfn_resource_name(r.resource_name)))

    out: list[LambdaInfo] = []
    for r in resources:
        if not isinstance(r, models.LambdaFunction):
            continue
        is_api = r.resource_name == api_function
        fn_events = tuple(events.get(r.resource_name, ()))
        roots = (_api_roots(app) if is_api
                 else _event_roots(app, r.resource_name, [e.kind for e in fn_events]))
        out.append(LambdaInfo(
            name=r.resource_name,
            # Chalice renames the REST API's handler to APIHandler when it renders the API.
            cfn_name="APIHandler" if is_api else to_cfn_resource_name(r.resource_name),
            handler=r.handler,
            timeout=r.timeout,
            memory_size=r.memory_size,
            xray=bool(r.xray),
            log_group_cfn_name=(to_cfn_resource_name(r.log_group.resource_name)
                                if r.log_group is not None else None),
            events=fn_events,
            roots=tuple(dict.fromkeys(roots)),
        ))
    return out

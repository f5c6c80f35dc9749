"""Play the Lambda Python runtime for one function: `python -S -P lambda_runner.py SPEC OUT`.

Standard library only: it runs inside the extracted bundle with a clean interpreter
(``devtools.artifact``), so it must not bring anything the bundle lacks. Like Lambda's
bootstrap it imports the module the handler names once (the cold start), then calls the
handler for each event with a context object, in the same process (warm invocations).

SPEC (JSON): ``handler`` ("app.app"), ``events`` (list), ``function_name``, ``memory``,
``timeout``, ``roots`` (directories the code may be loaded from: the task and the layer),
``services`` (botocore service models that must load). OUT receives one JSON document:
``answers`` (per event: ``result`` or ``error``, and ``at``, the wall-clock time it was
answered), ``import_error``, ``handler_error``, ``foreign_modules`` (modules loaded from
outside the roots and the standard library) and ``service_errors``.
"""

import importlib
import json
import os
import sys
import sysconfig
import time
import traceback
import uuid


class LambdaContext:
    """The attributes and method of Lambda's context object that code reads."""

    def __init__(self, spec: dict, request_id: str) -> None:
        region = os.environ.get("AWS_REGION", "us-east-1")
        self.function_name = spec["function_name"]
        self.function_version = "$LATEST"
        self.invoked_function_arn = (f"arn:aws:lambda:{region}:123456789012:function:"
                                     f"{self.function_name}")
        self.memory_limit_in_mb = str(spec["memory"])
        self.aws_request_id = request_id
        self.log_group_name = f"/aws/lambda/{self.function_name}"
        self.log_stream_name = "artifact-test"
        self._deadline = time.monotonic() + float(spec["timeout"])

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def _foreign_modules(roots: list) -> list:
    allowed = tuple(os.path.realpath(r) + os.sep for r in roots)
    stdlib = tuple(os.path.realpath(sysconfig.get_paths()[k]) + os.sep
                   for k in ("stdlib", "platstdlib"))
    out = []
    for name, module in sorted(sys.modules.items()):
        if name in ("__main__", "__mp_main__"):  # this runner
            continue
        path = getattr(module, "__file__", None)
        if not path:
            continue
        real = os.path.realpath(path)
        if real.startswith(allowed):
            continue
        if real.startswith(stdlib) and not any(p in real for p in ("site-packages",
                                                                     "dist-packages")):
            continue
        out.append(f"{name} ({real})")
    return out


def main() -> None:
    spec_path, out_path = sys.argv[1], sys.argv[2]
    with open(spec_path) as f:
        spec = json.load(f)
    report: dict = {"answers": [], "import_error": None, "handler_error": None,
                    "foreign_modules": [], "service_errors": {}}
    module_name, _, attr = spec["handler"].rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except BaseException:  # noqa: BLE001 - the report says what the bundle lacks
        report["import_error"] = traceback.format_exc()
        module = None
    handler = getattr(module, attr, None) if module is not None else None
    if module is not None and not callable(handler):
        report["handler_error"] = f"{spec['handler']}: {module_name} has no callable {attr!r}"
    if callable(handler):
        for event in spec["events"]:
            request_id = str(uuid.uuid4())
            os.environ["_X_AMZN_TRACE_ID"] = (f"Root=1-{int(time.time()):08x}-"
                                              f"{uuid.uuid4().hex[:24]};Parent="
                                              f"{uuid.uuid4().hex[:16]};Sampled=0")
            try:
                result = handler(event, LambdaContext(spec, request_id))
                report["answers"].append({"result": result, "at": time.time()})
            except BaseException:  # noqa: BLE001 - Lambda reports an unhandled error; so do we
                report["answers"].append({"error": traceback.format_exc(), "at": time.time()})
    for service in spec.get("services", []):
        try:
            import botocore.session

            botocore.session.get_session().get_service_model(service)
        except BaseException as exc:  # noqa: BLE001 - a model the layer lost
            report["service_errors"][service] = repr(exc)
    report["foreign_modules"] = _foreign_modules(spec["roots"]) if spec["roots"] else []
    with open(out_path, "w") as f:
        json.dump(report, f, default=str)


if __name__ == "__main__":
    main()

"""`make bench`: startup cost, AWS calls per request, the invoke path's added latency, the
daily run at 2,000 connections, the deployed bundle's cold start, and the Lambda package size.
Results go to bench/results.md and bench/results.json (committed, so changes show up in review).

Everything runs on loopback: moto's server and the fake provider in their own processes (so
they do not share the benchmark's interpreter lock), the app in process or under `chalice
local`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
import tracemalloc
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from devtools import localenv, localstack  # noqa: E402

RESULTS_MD = ROOT / "bench" / "results.md"
RESULTS_JSON = ROOT / "bench" / "results.json"


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


# ---------------------------------------------------------------------------- startup


def import_time(module: str, runs: int) -> list[float]:
    code = ("import time; t=time.perf_counter(); import " + module +
            "; print(time.perf_counter()-t)")
    out = []
    for _ in range(runs):
        res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                             text=True, check=True)
        out.append(float(res.stdout.strip()) * 1000)
    return out


def bench_startup(runs: int) -> dict[str, Any]:
    # Warm the file cache and bytecode once, then interleave the two measurements.
    import_time("app", 1)
    import_time("boto3", 1)
    app_ms: list[float] = []
    boto_ms: list[float] = []
    for _ in range(runs):
        app_ms += import_time("app", 1)
        boto_ms += import_time("boto3", 1)
    app_med, boto_med = statistics.median(app_ms), statistics.median(boto_ms)
    return {"runs": runs, "import_app_ms_median": round(app_med, 1),
            "import_boto3_ms_median": round(boto_med, 1),
            "ratio": round(app_med / boto_med, 2), "goal_ratio": 1.5}


# ---------------------------------------------------------------------------- helpers


@contextmanager
def processes() -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []

    def spawn(*args: str) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen([sys.executable, *args], cwd=ROOT, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)
        started.append(proc)
        return proc

    try:
        yield spawn
    finally:
        for proc in started:
            localstack.stop_process(proc)


def start_backends(spawn: Callable[..., Any]) -> tuple[int, str]:
    aws_port, fake_port = localstack.free_port(), localstack.free_port()
    spawn("-m", "devtools.emulator", "--port", str(aws_port))
    spawn("-m", "fakeprovider", "--host", "127.0.0.1", "--port", str(fake_port))
    localstack.wait_http(f"http://127.0.0.1:{aws_port}/moto-api/")
    localstack.wait_http(f"http://127.0.0.1:{fake_port}/_control/health")
    jwt_dir = localenv.STATE_DIR / "bench-jwt"
    from devtools.token import ensure_keys

    ensure_keys(jwt_dir)
    env = localenv.environment(aws_port, jwt_dir=jwt_dir)
    localstack.bootstrap(env, log=lambda _m: None)
    return aws_port, f"http://127.0.0.1:{fake_port}"


def caller(user: str) -> Any:
    from chalicelib.services.common import Caller
    from chalicelib.services.identity import Principal

    return Caller(Principal(user_id=user, is_admin=False), request_id="bench")


# ---------------------------------------------------------------------------- request costs


def bench_request_costs(fake: str) -> dict[str, Any]:
    from chalice.test import Client

    from app import app
    from devtools.token import make_token
    from tests.support.aws_calls import count_aws_calls

    token = make_token("bench-costs", jwt_dir=localenv.STATE_DIR / "bench-jwt")
    headers = {"authorization": f"Bearer {token}", "content-type": "application/json"}
    body = json.dumps({"name": "cost", "provider": "custom", "base_url": f"{fake}/openai/v1",
                       "credentials": {"api_key": "fk_ok_bench_cost_key_01"},
                       "default_model": "gpt-4o"})
    out: dict[str, Any] = {}
    with Client(app, stage_name="local") as client:
        client.http.get("/connections", headers=headers)  # warm the wiring and clients
        with count_aws_calls() as calls:
            created = client.http.post("/connections", headers=headers, body=body)
        cid = json.loads(created.body)["id"]
        out["create"] = {f"{s}:{o}": n for (s, o), n in calls.items()}
        for name, method, path, payload in (
            ("list", "GET", "/connections", None),
            ("get", "GET", f"/connections/{cid}", None),
            ("patch", "PATCH", f"/connections/{cid}", json.dumps({"description": "x"})),
            ("test", "POST", f"/connections/{cid}/test", None),
            ("delete", "DELETE", f"/connections/{cid}", None),
        ):
            with count_aws_calls() as calls:
                client.http.request(method, path, headers=headers, body=payload)
            out[name] = {f"{s}:{o}": n for (s, o), n in calls.items()}
    out["scans_on_request_paths"] = sum(n for op in out.values() for k, n in op.items()
                                        if k.endswith(":Scan"))
    return out


# ---------------------------------------------------------------------------- invoke


def bench_invoke(fake: str, n: int) -> dict[str, Any]:
    import httpx
    from chalice.test import Client

    from app import app
    from devtools.token import make_token
    from tests.support.aws_calls import count_aws_calls

    key = "fk_lat50_bench_invoke_key_01"
    token = make_token("bench-invoke", jwt_dir=localenv.STATE_DIR / "bench-jwt")
    headers = {"authorization": f"Bearer {token}", "content-type": "application/json"}
    msg = {"messages": [{"role": "user", "content": "hello"}], "max_tokens": 8}
    # The fake's own latency, measured from here on the same call.
    own = []
    with httpx.Client(trust_env=False) as h:
        for _ in range(n):
            t = time.perf_counter()
            h.post(f"{fake}/openai/v1/chat/completions", json={"model": "gpt-4o", **msg},
                   headers={"authorization": f"Bearer {key}"}).raise_for_status()
            own.append((time.perf_counter() - t) * 1000)
    own_p50 = statistics.median(own)
    body = json.dumps({"name": "invoke", "provider": "custom", "base_url": f"{fake}/openai/v1",
                       "credentials": {"api_key": key}, "default_model": "gpt-4o"})
    result: dict[str, Any] = {"provider_latency_ms_p50": round(own_p50, 1), "runs": n}
    with Client(app, stage_name="local") as client:
        cid = json.loads(client.http.post("/connections", headers=headers, body=body).body)["id"]
        path = f"/connections/{cid}/invoke"
        client.http.post(path, headers=headers, body=json.dumps(msg))  # warm: cache filled
        with count_aws_calls() as calls:
            client.http.post(path, headers=headers, body=json.dumps(msg))
        result["aws_calls_per_warm_invoke"] = {f"{s}:{o}": c for (s, o), c in calls.items()}
        times = []
        for _ in range(n):
            t = time.perf_counter()
            resp = client.http.post(path, headers=headers, body=json.dumps(msg))
            times.append((time.perf_counter() - t) * 1000)
            assert resp.status_code == 200, resp.body
        added = [x - own_p50 for x in times]
        result["in_process_added_ms"] = {"p50": round(pct(added, 50), 1),
                                         "p95": round(pct(added, 95), 1)}
    # Over HTTP: the same app under `chalice local`.
    api_port = localstack.free_port()
    env = dict(os.environ)
    proc = localstack.start_api(env, api_port, quiet=True)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{api_port}", headers=headers,
                          trust_env=False, timeout=30) as h:
            h.post(f"/connections/{cid}/invoke", json=msg).raise_for_status()
            times = []
            for _ in range(n):
                t = time.perf_counter()
                h.post(f"/connections/{cid}/invoke", json=msg).raise_for_status()
                times.append((time.perf_counter() - t) * 1000)
        added = [x - own_p50 for x in times]
        result["over_http_added_ms"] = {"p50": round(pct(added, 50), 1),
                                        "p95": round(pct(added, 95), 1)}
    finally:
        localstack.stop_process(proc)
    return result


# ---------------------------------------------------------------------------- daily


def seed_connections(fake: str, count: int, latency_ms: int) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from chalicelib.api.deps import services

    svc = services()
    owner = f"bench-daily-{uuid.uuid4().hex[:6]}"

    def one(i: int) -> None:
        svc.connections.create(caller(owner), {
            "name": f"conn {i:05d}", "provider": "custom", "base_url": f"{fake}/openai/v1",
            "credentials": {"api_key": f"fk_lat{latency_ms}_bench_{i:05d}_key"},
            "default_model": "gpt-4o", "settings": {"timeout_seconds": 30, "max_retries": 0},
        })

    # Seeding is not what is measured: write each connection with a plain PutItem instead of
    # the create transaction. moto applies a transaction by deep-copying the tables, which
    # at thousands of items costs seconds and gigabytes per call.
    repo = svc.connections._repo
    original = repo.create
    repo.create = lambda item, audit: item.save()  # type: ignore[method-assign]
    try:
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(one, range(count)))
    finally:
        repo.create = original  # type: ignore[method-assign]


def drain_worker(trace_first: bool = True) -> tuple[float, int, int, float]:
    """Run the SQS worker over the whole queue, one Lambda-sized batch at a time; the first
    batch runs under tracemalloc (the worker's memory for one invocation: returned, MiB)
    unless ``trace_first`` is false (tracemalloc slows that batch down several times)."""
    import boto3

    from chalicelib.api import events

    sqs = boto3.client("sqs")
    url = sqs.get_queue_url(QueueName=localenv.WORK_QUEUE)["QueueUrl"]
    busy = 0.0
    worker_peak = 0
    batches = failed = 0
    while True:
        msgs = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10,
                                   WaitTimeSeconds=0).get("Messages", [])
        if not msgs:
            break
        if batches == 0 and trace_first:
            tracemalloc.start()
        t = time.perf_counter()
        result = events.test_batch([(m["MessageId"], m["Body"]) for m in msgs])
        busy += time.perf_counter() - t
        if batches == 0 and trace_first:
            _, worker_peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
        batches += 1
        failed += len(result["batchItemFailures"])
        sqs.delete_message_batch(QueueUrl=url, Entries=[
            {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(msgs)])
    return busy, batches, failed, worker_peak / 2**20


def bench_daily(fake: str, count: int, latency_ms: int, concurrency: int, *,
                trace_worker: bool = True) -> dict[str, Any]:
    from chalicelib.api.deps import services

    svc = services()
    svc.daily.concurrency = concurrency
    # Every bench connection is on one provider (the fake): lift the per-provider cap to the
    # worker's concurrency, or the cap (10 by default) would be what is measured.
    svc.daily.per_provider = concurrency
    t = time.perf_counter()
    seed_connections(fake, count, latency_ms)
    seed_s = time.perf_counter() - t
    # Memory of the dispatcher with tracemalloc (which slows Python down, so it is not on
    # while anything is timed); the worker's memory as the process's peak RSS.
    tracemalloc.start()
    t = time.perf_counter()
    dispatched = svc.daily.dispatch()
    dispatch_s = time.perf_counter() - t
    _, dispatch_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    from tests.support.aws_calls import count_aws_calls

    cpu_before, machine_before = os.times(), machine_cpu_seconds()
    with count_aws_calls() as calls:
        busy, batches, failed, worker_peak_mib = drain_worker(trace_first=trace_worker)
    cpu_after, machine_after = os.times(), machine_cpu_seconds()
    tested = dispatched["connections_queued"]
    # The queue's own calls (ReceiveMessage, DeleteMessageBatch) are Lambda's event source
    # mapping in the cloud, not the function's: counted apart.
    platform = {k: n for k, n in calls.items() if k[0] == "sqs" and k[1] in (
        "ReceiveMessage", "DeleteMessageBatch", "GetQueueUrl")}
    app_calls = sum(calls.values()) - sum(platform.values())
    ideal = tested * latency_ms / 1000 / concurrency
    return {
        "connections": tested, "provider_latency_ms": latency_ms, "concurrency": concurrency,
        "seed_s": round(seed_s, 1), "dispatch_s": round(dispatch_s, 2),
        "worker_busy_s": round(busy, 2), "ideal_s": round(ideal, 2),
        "ratio_to_ideal": round(busy / ideal, 2) if ideal else None, "goal_ratio": 1.3,
        "worker_batches": batches, "failed_messages": failed,
        "aws_calls_per_connection": round(app_calls / max(1, tested), 3),
        "goal_calls_per_connection": 3.2,
        "queue_calls_per_connection": round(sum(platform.values()) / max(1, tested), 3),
        "dispatch_messages": dispatched["messages"],
        "worker_first_batch_peak_traced_mib": round(worker_peak_mib, 2),
        "aws_calls_by_operation": {f"{s}:{o}": n for (s, o), n in sorted(calls.items())},
        "dispatch_peak_traced_mib": round(dispatch_peak / 2**20, 2),
        "max_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        # Where the wall time went: this process's CPU (the worker, boto3 included) and the
        # whole machine's busy CPU (the emulators too) over the drain, against its cores.
        "worker_cpu_s": round((cpu_after.user + cpu_after.system)
                              - (cpu_before.user + cpu_before.system), 2),
        "machine_busy_cpu_s": round(machine_after - machine_before, 2),
        "machine_cores": os.cpu_count(),
    }


def machine_cpu_seconds() -> float:
    """Busy CPU seconds of the whole machine so far (Linux /proc/stat; 0 elsewhere)."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except OSError:
        return 0.0
    ticks = [int(x) for x in fields]
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)
    return (sum(ticks[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def bench_worker_concurrency(fake: str, count: int, latency_ms: int,
                             concurrency: int) -> dict[str, Any]:
    """The worker's test phase alone: the same adapters, shared guarded client and
    semaphores as ``DailyRun.process``, without the per-connection DynamoDB/KMS calls (which
    the emulator serialises at a few ms each, see the run above)."""
    from chalicelib.providers.base import Target
    from chalicelib.providers.netguard import guarded_client
    from chalicelib.providers.runner import test_target

    async def run() -> tuple[float, list[str]]:
        overall = asyncio.Semaphore(concurrency)
        statuses: list[str] = []
        async with guarded_client(allow_hosts=frozenset({"127.0.0.1"}),
                                  allow_http=True) as client:
            async def one(i: int) -> None:
                target = Target(adapter="openai", base_url=f"{fake}/openai/v1",
                                credentials={"api_key": f"fk_lat{latency_ms}_w_{i:05d}_key"},
                                default_model="gpt-4o", timeout_seconds=30, max_retries=0,
                                allow_hosts=frozenset({"127.0.0.1"}), allow_http=True)
                async with overall:
                    outcome = await test_target(target, client=client)
                statuses.append(outcome.status)

            t = time.perf_counter()
            await asyncio.gather(*(one(i) for i in range(count)))
            return time.perf_counter() - t, statuses

    wall, statuses = asyncio.run(run())
    ideal = count * latency_ms / 1000 / concurrency
    return {"connections": count, "wall_s": round(wall, 2), "ideal_s": round(ideal, 2),
            "ratio_to_ideal": round(wall / ideal, 2),
            "active": sum(1 for s in statuses if s == "active")}


# ---------------------------------------------------------------------------- package


def bench_package() -> dict[str, Any] | None:
    script = ROOT / "devtools" / "package_size.py"
    if not script.exists():
        return None
    res = subprocess.run([sys.executable, "-m", "devtools.package_size", "--json"], cwd=ROOT,
                         capture_output=True, text=True, check=False)
    if res.returncode != 0:
        return {"error": res.stderr.strip()[-500:]}
    try:
        return dict(json.loads(res.stdout.strip().splitlines()[-1]))
    except (ValueError, IndexError):
        return {"output": res.stdout.strip()[-500:]}


# ---------------------------------------------------------------------------- cold start


def bench_cold_start(runs: int, stage: str = "dev") -> dict[str, Any]:
    """Fresh processes of the extracted bundle (the runtime's clean interpreter, as the
    artifact tests run it): spawn to the first answered API Gateway event and to the first
    answered SQS batch, interleaved with spawn to ``import boto3`` done, from the same
    PYTHONPATH (the bundle's own boto3)."""
    import tempfile

    from devtools import artifact
    from devtools.emulator import Emulator
    from devtools.token import ensure_keys, make_token

    port = localstack.free_port()
    emulator = Emulator(port=port).start()
    try:
        with tempfile.TemporaryDirectory(prefix="bench-cold-") as tmp:
            home = Path(tmp)
            bundle = artifact.extract(stage, home / "bundle")
            jwt_dir = home / "jwt"
            ensure_keys(jwt_dir)
            params = artifact.stack_parameters(jwt_dir, localenv.ISSUER, localenv.AUDIENCE)
            ready = artifact.prepare_stage(stage, bundle, f"http://127.0.0.1:{port}", params,
                                           home, make_token("bench-admin", admin=True,
                                                            jwt_dir=jwt_dir))
            token = make_token("bench-cold", jwt_dir=jwt_dir)
            api_event = artifact.load_event("apigw_list_connections", token=token)
            sqs_event = ready.events("sqs", token)[0]
            boto_code = "import time, boto3; print(repr(time.time()))"

            def first(kind: str, event: Any) -> float:
                report = artifact.invoke(ready.functions[kind], [event],
                                         ready.environments[kind], python=ready.python,
                                         roots=ready.roots)
                if report.problems() or not report.answers:
                    raise RuntimeError(f"{kind}: {report.problems()}")
                return (report.answers[0]["at"] - report.started) * 1000

            def boto3_alone() -> float:
                started = time.time()
                out = subprocess.run([ready.python, "-S", "-P", "-c", boto_code],
                                     env=ready.environments["api"], cwd=tmp,
                                     capture_output=True, text=True, check=True)
                return (float(out.stdout.strip().splitlines()[-1]) - started) * 1000

            first("api", api_event)  # warm the file cache once, as the other sections do
            api_ms, sqs_ms, boto_ms = [], [], []
            for _ in range(runs):
                api_ms.append(first("api", api_event))
                boto_ms.append(boto3_alone())
                sqs_ms.append(first("sqs", sqs_event))
    finally:
        emulator.stop()
    api, sqs, boto = (statistics.median(v) for v in (api_ms, sqs_ms, boto_ms))
    return {"runs": runs, "stage": stage, "interpreter": ready.python,
            "load_average_1m": round(os.getloadavg()[0], 1),
            "first_api_event_ms_median": round(api, 1),
            "first_sqs_batch_ms_median": round(sqs, 1),
            "import_boto3_ms_median": round(boto, 1),
            "api_ratio": round(api / boto, 2), "sqs_ratio": round(sqs / boto, 2),
            "api_ms_p90": round(pct(api_ms, 90), 1), "sqs_ms_p90": round(pct(sqs_ms, 90), 1)}


def bench_package_stage(stage: str = "dev") -> dict[str, Any]:
    from devtools.package_size import measure_stage

    return measure_stage(stage)


# ---------------------------------------------------------------------------- report


# ---------------------------------------------------------------------------- load

LOAD_MIX = {"list": 25, "get": 25, "patch": 20, "test": 10, "invoke": 20}


async def _load_client(http: Any, token: str, cid: str, version: int, end: float, seed: int,
                       samples: list[tuple[str, int, float]]) -> None:
    """One client: weighted random routes on its own connection until ``end``."""
    import random

    import httpx

    rnd = random.Random(seed)
    headers = {"authorization": f"Bearer {token}"}
    routes, weights = list(LOAD_MIX), list(LOAD_MIX.values())
    n = 0
    while time.monotonic() < end:
        route = rnd.choices(routes, weights)[0]
        n += 1
        started = time.perf_counter()
        try:
            resp = await _load_request(http, route, cid, n, version, headers)
        except httpx.TransportError:
            # Counted (status 0), not fatal: a lost answer is what the accounting must show.
            samples.append((route, 0, (time.perf_counter() - started) * 1000))
            continue
        samples.append((route, resp.status_code, (time.perf_counter() - started) * 1000))
        if route in ("get", "patch") and resp.status_code == 200:
            version = int(resp.json()["version"])


async def _load_request(http: Any, route: str, cid: str, n: int, version: int,
                        headers: dict[str, str]) -> Any:
    if route == "list":
        return await http.get("/connections", headers=headers)
    if route == "get":
        return await http.get(f"/connections/{cid}", headers=headers)
    if route == "patch":
        return await http.patch(f"/connections/{cid}", json={"description": f"load {n}"},
                                headers={**headers, "if-match": f'"v{version}"'})
    if route == "test":
        return await http.post(f"/connections/{cid}/test", headers=headers)
    return await http.post(f"/connections/{cid}/invoke", headers=headers,
                           json={"messages": [{"role": "user", "content": "hi"}]})


async def _load_run(api: str, fake: str, clients: int, users: int, seconds: float
                    ) -> dict[str, Any]:
    import httpx

    from devtools.token import make_token

    tokens = {f"load-{uuid.uuid4().hex[:6]}-{u}": "" for u in range(users)}
    for user in tokens:
        tokens[user] = make_token(user)
    names = list(tokens)
    limits = httpx.Limits(max_connections=clients + 10, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=api, timeout=120, trust_env=False,
                                 limits=limits) as http:
        # Given one connection per client to the fake provider, owned round-robin by users
        owned: list[tuple[str, str, int]] = []
        for i in range(clients):
            user = names[i % users]
            resp = await http.post("/connections", headers={
                "authorization": f"Bearer {tokens[user]}"}, json={
                "name": f"load {i}", "provider": "custom", "base_url": f"{fake}/openai/v1",
                "credentials": {"api_key": f"fk_ok_load_key_{i:04d}_abcdef"},
                "default_model": "gpt-4o"})
            assert resp.status_code == 201, resp.text
            owned.append((user, resp.json()["id"], int(resp.json()["version"])))
        # When the clients run together for ``seconds``
        samples: list[tuple[str, int, float]] = []
        started = time.monotonic()
        end = started + seconds
        await asyncio.gather(*(_load_client(http, tokens[user], cid, version, end, seed,
                                            samples)
                               for seed, (user, cid, version) in enumerate(owned)))
        wall = time.monotonic() - started
        # Then: what the service recorded, read back through the API
        usage_requests = 0
        for user, cid, _v in owned:
            stats = await http.get(f"/connections/{cid}/stats",
                                   headers={"authorization": f"Bearer {tokens[user]}"})
            usage_requests += int(stats.json()["usage"]["7d"]["requests"])
        audited: dict[str, int] = {}
        for user in names:
            cursor = None
            while True:
                params = {"limit": "100", **({"cursor": cursor} if cursor else {})}
                page = (await http.get("/audit", params=params, headers={
                    "authorization": f"Bearer {tokens[user]}"})).json()
                for event in page["items"]:
                    audited[event["action"]] = audited.get(event["action"], 0) + 1
                cursor = page["next_cursor"]
                if not cursor:
                    break
    by_route: dict[str, Any] = {}
    for route in LOAD_MIX:
        mine = [s for s in samples if s[0] == route]
        lat = [s[2] for s in mine]
        statuses: dict[str, int] = {}
        for s in mine:
            statuses[str(s[1])] = statuses.get(str(s[1]), 0) + 1
        by_route[route] = {
            "requests": len(mine), "statuses": statuses,
            "p50_ms": round(pct(lat, 50), 1) if lat else None,
            "p95_ms": round(pct(lat, 95), 1) if lat else None,
            "p99_ms": round(pct(lat, 99), 1) if lat else None,
        }
    ok = {r: sum(1 for s in samples if s[0] == r and 200 <= s[1] < 300) for r in LOAD_MIX}
    return {
        "clients": clients, "users": users, "seconds": round(wall, 1),
        "requests": len(samples), "rps": round(len(samples) / wall, 1),
        "server_errors": sum(1 for s in samples if s[1] >= 500),
        "transport_errors": sum(1 for s in samples if s[1] == 0),
        "by_route": by_route,
        "accounting": {
            "invokes_ok": ok["invoke"], "usage_requests": usage_requests,
            "patches_ok": ok["patch"], "audit_updates": audited.get("connection.update", 0),
            "tests_ok": ok["test"], "audit_tests": audited.get("connection.test", 0),
            "creates": clients, "audit_creates": audited.get("connection.create", 0),
        },
    }


def bench_load(spawn: Callable[..., Any], clients: int, users: int, seconds: float
               ) -> dict[str, Any]:
    """``clients`` concurrent clients for ``seconds`` against the `make run` stack, started
    as the end-to-end tier starts it; then checks that nothing was lost."""
    import tempfile

    api_port, aws_port, fake_port = (localstack.free_port() for _ in range(3))
    # Its own state folder (a `make run` keeps its run.json), and no per-user test limit:
    # this measures throughput, and its few users test far more than 30 times a minute.
    os.environ[localenv.STATE_DIR_ENV] = tempfile.mkdtemp(prefix="llmc-bench-")
    os.environ["TESTS_PER_MINUTE"] = "10000"
    spawn("-m", "devtools.localstack", "run", "--port", str(api_port), "--aws-port",
          str(aws_port), "--fake-port", str(fake_port))
    api = f"http://127.0.0.1:{api_port}"
    localstack.wait_http(f"{api}/health", timeout=180)
    result = asyncio.run(_load_run(api, f"http://127.0.0.1:{fake_port}", clients, users,
                                   seconds))
    acc = result["accounting"]
    result["nothing_lost"] = (acc["invokes_ok"] == acc["usage_requests"]
                              and acc["patches_ok"] == acc["audit_updates"]
                              and acc["tests_ok"] == acc["audit_tests"]
                              and acc["creates"] == acc["audit_creates"])
    return result


def render(results: dict[str, Any]) -> str:
    s = results.get("startup")
    lines = ["# Benchmark results", "",
             f"Recorded {results['at']} on {results['machine']} with `make bench`.", ""]
    if s:
        lines += ["## Startup: `import app` against `import boto3`", "",
                  f"Median of {s['runs']} fresh interpreters each: app {s['import_app_ms_median']} "
                  f"ms, boto3 {s['import_boto3_ms_median']} ms, ratio **{s['ratio']}x** "
                  f"(goal at most {s['goal_ratio']}x).", ""]
    c = results.get("request_costs")
    if c:
        lines += ["## AWS calls per request (counted at the botocore client)", "",
                  "| request | calls |", "| --- | --- |"]
        for name in ("list", "get", "create", "patch", "test", "delete"):
            calls = ", ".join(f"{k} x{v}" for k, v in sorted(c[name].items()))
            lines.append(f"| {name} | {calls or 'none'} |")
        lines += ["", f"Scans on request paths: {c['scans_on_request_paths']}.", ""]
    i = results.get("invoke")
    if i:
        calls = ", ".join(f"{k} x{v}" for k, v in sorted(i["aws_calls_per_warm_invoke"].items()))
        lines += ["## Invoke: latency added over the provider's own", "",
                  f"Fake provider answering in {i['provider_latency_ms_p50']} ms (p50, measured "
                  f"directly); {i['runs']} invokes each.", "",
                  "| path | added p50 ms | added p95 ms |", "| --- | --- | --- |",
                  f"| in process (chalice.test.Client) | {i['in_process_added_ms']['p50']} | "
                  f"{i['in_process_added_ms']['p95']} |",
                  f"| over HTTP (chalice local) | {i['over_http_added_ms']['p50']} | "
                  f"{i['over_http_added_ms']['p95']} |", "",
                  f"AWS calls per warm invoke: {calls}.", ""]
    w = results.get("worker_concurrency")
    if w:
        lines += ["## Daily worker: the test phase alone", "",
                  f"{w['connections']} connection tests through the same adapters, shared "
                  f"guarded client and concurrency cap, without the storage calls: "
                  f"{w['wall_s']} s against the ideal {w['ideal_s']} s: "
                  f"**{w['ratio_to_ideal']}x**; {w['active']} came back active.", ""]
    d = results.get("daily")
    if d:
        by_op = ", ".join(f"{k} x{v}" for k, v in d.get("aws_calls_by_operation", {}).items())
        lines += ["## Daily run", "",
                  f"{d['connections']} connections, fake provider answering in "
                  f"{d['provider_latency_ms']} ms, concurrency {d['concurrency']} per worker, "
                  f"one worker draining the queue {d['worker_batches']} batches of up to 10 "
                  "messages (25 connections each).", "",
                  f"- worker wall time {d['worker_busy_s']} s against the ideal "
                  f"{d['ideal_s']} s (connections x latency / concurrency): "
                  f"**{d['ratio_to_ideal']}x** (goal {d['goal_ratio']}x)",
                  f"- dispatcher {d['dispatch_s']} s (under tracemalloc), peak traced memory "
                  f"{d['dispatch_peak_traced_mib']} MiB; process max RSS after the run "
                  f"{d['max_rss_mib']} MiB",
                  f"- failed messages: {d['failed_messages']}",
                  f"- AWS calls per tested connection: {d.get('aws_calls_per_connection')} "
                  f"(goal at most 3.2; all calls: {by_op})",
                  "",
                  "Reading: the worker's own concurrency is close to the ideal (the test phase "
                  "alone, above); the end-to-end run is bound by the emulator, which serialises "
                  "DynamoDB requests (moto's transactions are not thread-safe) at several ms "
                  "each. Against DynamoDB those calls run in parallel.", ""]
        sizes = results.get("daily_by_size") or {}
        if sizes:
            lines += ["### Against the count", "",
                      "| connections | messages | worker wall s | ideal s | ratio | "
                      "AWS calls / connection | dispatcher peak MiB (traced) | worker peak "
                      "MiB, one batch (traced) | process max RSS MiB |",
                      "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
            for _n, r in sorted(sizes.items(), key=lambda kv: int(kv[0])):
                lines.append(
                    f"| {r['connections']} | {r.get('dispatch_messages')} | "
                    f"{r['worker_busy_s']} | {r['ideal_s']} | {r['ratio_to_ideal']}x | "
                    f"{r['aws_calls_per_connection']} (+{r.get('queue_calls_per_connection')} "
                    f"queue) | {r['dispatch_peak_traced_mib']} | "
                    f"{r.get('worker_first_batch_peak_traced_mib')} | {r['max_rss_mib']} |")
            lines += ["", "AWS calls per connection count what the functions call (goal at "
                      "most 3.2); the queue's ReceiveMessage/DeleteMessageBatch, done by "
                      "Lambda's event source mapping in the cloud, are shown apart. The "
                      "process max RSS includes moto's client side and every earlier section "
                      "of the bench, so it only ever grows; the traced peaks are the "
                      "dispatcher's and one worker invocation's own allocations (flat against "
                      "the count). The wall time is the emulator's: moto answers each "
                      "DynamoDB request in turn, slower as its tables grow (this run seeds "
                      "every size into the same tables), and on a shared machine it also "
                      "measures the neighbours' load; DynamoDB serves the same calls in "
                      "parallel (docs/scale.md works the cloud numbers out from the counts).",
                      ""]
        small = results.get("daily_small")
        if small and not sizes:
            lines += [f"Memory against size: the same run with {small['connections']} "
                      f"connections first: dispatcher peak {small['dispatch_peak_traced_mib']} "
                      f"MiB traced, process max RSS {small['max_rss_mib']} MiB; worker "
                      f"{small['worker_busy_s']} s against an ideal of {small['ideal_s']} s.",
                      ""]
    ddb = results.get("daily_ddblocal")
    if ddb:
        lines += ["## Daily run with DynamoDB on DynamoDB Local", "",
                  "`make bench-ddblocal`: the same run as above with DynamoDB served by "
                  "Amazon DynamoDB Local (concurrent; in memory, on loopback) and SQS/KMS on "
                  "moto; one worker process draining the queue a batch at a time, concurrency "
                  "50, no tracemalloc. Machine load average "
                  f"{ddb['load_average_1m_before']} before, {ddb['load_average_1m_after']} "
                  "after.", "",
                  "| connections | provider latency ms | worker wall s | ideal s | ratio | "
                  "worker CPU s (ms per connection) | machine busy CPU s (cores) | AWS calls "
                  "/ connection | failed messages |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        for r in ddb["runs"].values():
            per = round(1000 * r["worker_cpu_s"] / max(1, r["connections"]), 1)
            lines.append(
                f"| {r['connections']} | {r['provider_latency_ms']} | {r['worker_busy_s']} | "
                f"{r['ideal_s']} | **{r['ratio_to_ideal']}x** | {r['worker_cpu_s']} ({per}) "
                f"| {r['machine_busy_cpu_s']} ({r['machine_cores']}) | "
                f"{r['aws_calls_per_connection']} | {r['failed_messages']} |")
        lines += ["", "Reading: the ideal is connections x provider latency / concurrency. "
                  "When the worker's CPU time is close to its wall time, one worker process "
                  "is bound by its own CPU (one core: botocore, httpx and JSON per tested "
                  "connection), not by DynamoDB nor by waiting; its throughput is then at "
                  "most 1 / (CPU per connection), whatever the concurrency. In Lambda each "
                  "concurrent worker has its own vCPU (docs/scale.md).", ""]
    cold = results.get("cold_start")
    if cold:
        lines += ["## Cold start of the deployed bundle", "",
                  f"Median of {cold['runs']} fresh processes each, from the extracted "
                  f"`{cold['stage']}` bundle and layer with the runtime's clean interpreter "
                  f"(`{cold['interpreter']} -S`, PYTHONPATH = bundle + layer only, as the "
                  "artifact tests run it), against the emulator; spawn to answer, "
                  f"interleaved (machine load average {cold.get('load_average_1m', '?')} "
                  "at the end: absolute times scale with it, the ratios much less):", "",
                  "| from a fresh process to | median ms | p90 ms | ratio to `import boto3` |",
                  "| --- | --- | --- | --- |",
                  f"| the first answered API Gateway event (GET /connections) | "
                  f"{cold['first_api_event_ms_median']} | {cold['api_ms_p90']} | "
                  f"**{cold['api_ratio']}x** |",
                  f"| the first answered SQS batch (2 messages, 1 poison) | "
                  f"{cold['first_sqs_batch_ms_median']} | {cold['sqs_ms_p90']} | "
                  f"**{cold['sqs_ratio']}x** |",
                  f"| `import boto3` alone (same interpreter and PYTHONPATH) | "
                  f"{cold['import_boto3_ms_median']} | | 1x |", "",
                  "Both include the interpreter's own start, the handler's import (what "
                  "Lambda's init phase runs) and the first request's AWS calls to the "
                  "emulator; Lambda adds the download and extraction of the bundle and "
                  "layer, which this machine cannot measure.", ""]
    sizes = results.get("package_stage")
    if sizes:
        fn, layer = sizes["function"], sizes.get("layer") or {}

        def mb(n: Any) -> str:
            return f"{int(n) / 1e6:.2f} MB"

        lines += ["## Lambda package: function bundle and shared layer", "",
                  "| part | zipped | unzipped | files |", "| --- | --- | --- | --- |",
                  f"| function bundle (`deployment.zip`, each function) | "
                  f"{mb(fn['zipped_bytes'])} | {mb(fn['unzipped_bytes'])} | {fn['files']} |",
                  f"| shared layer (`layer-deployment.zip`) | "
                  f"{mb(layer.get('zipped_bytes', 0))} | {mb(layer.get('unzipped_bytes', 0))} "
                  f"| {layer.get('files', 0)} |",
                  f"| total | {mb(sizes['total_zipped_bytes'])} | "
                  f"{mb(sizes['total_unzipped_bytes'])} | |",
                  "| before the layer (one bundle, 2026-11-27) | 27.42 MB | 54.84 MB | 3312 |",
                  "", "Largest packages in the layer (unzipped): " + ", ".join(
                      f"{name} {mb(size)}" for name, size in layer.get("largest", [])) + ".",
                  ""]
    lo = results.get("load")
    if lo:
        acc = lo["accounting"]
        lines += ["## Load: concurrent clients against the local stack", "",
                  f"{lo['clients']} concurrent clients (one connection each, owned by "
                  f"{lo['users']} users) for {lo['seconds']} s against `make run`'s stack "
                  "(`chalice local`, moto's server, the fake provider), mixing "
                  + ", ".join(f"{k} {v}%" for k, v in LOAD_MIX.items())
                  + " (patch with If-Match of the version last read).", "",
                  f"**{lo['requests']} requests, {lo['rps']} requests/s, "
                  f"5xx: {lo['server_errors']}; connections dropped: "
                  f"{lo.get('transport_errors', 0)}.**", "",
                  "| route | requests | statuses | p50 ms | p95 ms | p99 ms |",
                  "| --- | --- | --- | --- | --- | --- |"]
        for route, r in lo["by_route"].items():
            statuses = ", ".join(f"{k} x{v}" for k, v in sorted(r["statuses"].items()))
            lines.append(f"| {route} | {r['requests']} | {statuses} | {r['p50_ms']} | "
                         f"{r['p95_ms']} | {r['p99_ms']} |")
        lines += ["", "Nothing lost (read back through the API afterwards): "
                  f"successful invokes {acc['invokes_ok']} = usage counter requests "
                  f"{acc['usage_requests']}; successful patches {acc['patches_ok']} = "
                  f"`connection.update` audit events {acc['audit_updates']}; successful tests "
                  f"{acc['tests_ok']} = `connection.test` events {acc['audit_tests']}; creates "
                  f"{acc['creates']} = `connection.create` events {acc['audit_creates']}: "
                  f"**{'all equal' if lo['nothing_lost'] else 'MISMATCH'}**.", "",
                  "Reading: one `chalice local` process on a shared 2-core machine, with the "
                  "emulator serialising DynamoDB; the figures are for regressions, not "
                  "capacity (Lambda scales out per request).", ""]
    p = results.get("package")
    if p:
        lines += ["## Lambda package", "", "```", json.dumps(p, indent=2), "```", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--connections", type=int, default=2000)
    parser.add_argument("--small", type=int, default=0)
    # 10,000 takes a few minutes on the emulator; `make bench BENCH_ARGS=--daily-sizes=2000`
    # for a quicker run.
    parser.add_argument("--daily-sizes", default="2000,10000")
    parser.add_argument("--latency-ms", type=int, default=100)
    # Provider latencies of the DynamoDB Local run (`make bench-ddblocal`).
    parser.add_argument("--ddblocal-latencies", default="100,1000")
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--import-runs", type=int, default=15)
    parser.add_argument("--invoke-runs", type=int, default=200)
    parser.add_argument("--cold-runs", type=int, default=12)
    parser.add_argument("--load-clients", type=int, default=50)
    parser.add_argument("--load-users", type=int, default=10)
    parser.add_argument("--load-seconds", type=float, default=60)
    parser.add_argument("--only",
                        default="startup,costs,invoke,worker,daily,coldstart,package,load")
    args = parser.parse_args()
    only = set(args.only.split(","))
    on_ddblocal = bool(os.environ.get("AWS_ENDPOINT_URL_DYNAMODB"))
    # A partial run (--only) keeps the other sections of the last full run.
    previous = json.loads(RESULTS_JSON.read_text()) if RESULTS_JSON.exists() else {}
    results: dict[str, Any] = {
        **previous,
        "at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python "
                   f"{platform.python_version()}",
    }
    if "startup" in only:
        results["startup"] = bench_startup(args.import_runs)
        print("startup", results["startup"], flush=True)
    with processes() as spawn:
        if only & {"costs", "invoke", "worker", "daily"}:
            _aws_port, fake = start_backends(spawn)
        if "costs" in only:
            results["request_costs"] = bench_request_costs(fake)
            print("costs", results["request_costs"], flush=True)
        if "invoke" in only:
            results["invoke"] = bench_invoke(fake, args.invoke_runs)
            print("invoke", results["invoke"], flush=True)
        if "worker" in only:
            results["worker_concurrency"] = bench_worker_concurrency(
                fake, args.connections, args.latency_ms, args.concurrency)
            print("worker", results["worker_concurrency"], flush=True)
        if "daily" in only and on_ddblocal:
            # DynamoDB on DynamoDB Local (devtools.ddblocal), every other service on moto: a
            # section of its own, so the moto figures above stay what they are.
            runs = {}
            load_before = round(os.getloadavg()[0], 1)
            for lat in [int(x) for x in args.ddblocal_latencies.split(",") if x.strip()]:
                for n in [int(x) for x in args.daily_sizes.split(",") if x.strip()]:
                    runs[f"{n}@{lat}ms"] = bench_daily(fake, n, lat, args.concurrency,
                                                      trace_worker=False)
                    print("daily_ddblocal", n, lat, runs[f"{n}@{lat}ms"], flush=True)
            results["daily_ddblocal"] = {
                "dynamodb_endpoint": "DynamoDB Local (devtools.ddblocal)",
                "load_average_1m_before": load_before,
                "load_average_1m_after": round(os.getloadavg()[0], 1),
                "runs": runs,
            }
            print("daily_ddblocal", results["daily_ddblocal"], flush=True)
        elif "daily" in only:
            if args.small:
                results["daily_small"] = bench_daily(fake, args.small, args.latency_ms,
                                                     args.concurrency)
                print("daily_small", results["daily_small"], flush=True)
            results["daily_by_size"] = {}
            for n in [int(x) for x in args.daily_sizes.split(",") if x.strip()]:
                got = bench_daily(fake, n, args.latency_ms, args.concurrency)
                results["daily_by_size"][str(n)] = got
                print("daily", n, got, flush=True)
            if results["daily_by_size"]:
                results["daily"] = results["daily_by_size"][min(results["daily_by_size"],
                                                                key=int)]
                results.pop("daily_small", None)
        if "load" in only:
            results["load"] = bench_load(spawn, args.load_clients, args.load_users,
                                         args.load_seconds)
            print("load", results["load"], flush=True)
    if "coldstart" in only:
        results["cold_start"] = bench_cold_start(args.cold_runs)
        print("cold_start", results["cold_start"], flush=True)
    if "package" in only:
        # The function bundle and the layer, measured apart (the single-zip section it
        # replaces would now show the function bundle alone).
        results.pop("package", None)
        results["package_stage"] = bench_package_stage()
        print("package", results["package_stage"], flush=True)
    RESULTS_JSON.write_text(json.dumps(results, indent=2) + "\n")
    RESULTS_MD.write_text(render(results))
    print(f"written {RESULTS_MD.relative_to(ROOT)}")


if __name__ == "__main__":
    asyncio.set_event_loop_policy(None)
    main()

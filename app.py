"""Wiring only: create the app, register blueprints, schedules and queue handlers."""

import os

from chalice import Cron, Rate  # noqa: F401 - Rate is for stages that prefer it

from chalicelib.api import (
    audit,
    connections,
    console,
    credential_sets,
    events,
    http,
    incidents,
    invoke,
    meta,
    notifications,
    openapi,
    providers,
    testing,
)

# Chalice's logger is named after the app, which is also the Powertools logger's name:
# configure_logs=False, and no ``app.debug = ...`` (its setter forces that logger to ERROR and
# would drop every INFO line). debug stays False, Chalice's default: no stack trace reaches a
# client in any stage, and a test checks that.
# Chalice with the current request per thread (see chalicelib.api.http.App).
app = http.App(app_name="llm-connections", configure_logs=False)
app.api.binary_types = []

http.install(app)
app.register_blueprint(meta.bp)
app.register_blueprint(providers.bp)
app.register_blueprint(connections.bp)
app.register_blueprint(credential_sets.bp)
app.register_blueprint(testing.bp)
app.register_blueprint(invoke.bp)
app.register_blueprint(notifications.bp)
app.register_blueprint(audit.bp)
app.register_blueprint(console.bp)
if os.environ.get("STAGE") == "local":
    # The local sign-in must not exist in any deployed stage: packaging never sets STAGE=local.
    from chalicelib.api import console_local

    app.register_blueprint(console_local.bp)
app.register_blueprint(incidents.bp)
openapi.bind(app)

# The schedule is fixed at package time; each stage sets it in .chalice/config.json and the
# deploy passes it through (DAILY_SCHEDULE), defaulting to 06:00 UTC every day.
DAILY_SCHEDULE = os.environ.get("DAILY_SCHEDULE", "cron(0 6 * * ? *)")
WORK_QUEUE_NAME = os.environ.get("WORK_QUEUE_NAME", "llm-connections-work")


@app.schedule(DAILY_SCHEDULE, name="run_daily")
def run_daily(event: object) -> dict:
    return events.run_daily()


@app.on_sqs_message(queue=WORK_QUEUE_NAME, batch_size=10, name="test_worker")
def test_worker(event: object) -> dict:
    records = [(r.to_dict()["messageId"], r.body) for r in event]  # type: ignore[attr-defined]
    return events.test_batch(records)

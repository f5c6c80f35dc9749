"""Connection alerts through SNS: on failure, as a reminder while it stays failed, and on
recovery. Never a secret: messages are built from the stored, already-scrubbed result.

Transitions are claimed with a conditional update of the connection's ``alert`` state before
publishing, so two workers (or a re-delivered message) cannot alert twice.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from chalicelib.data.models import ConnectionModel
from chalicelib.metrics_names import ALERT_PUBLISH_FAILURES
from chalicelib.observability import logger, metrics, redact
from chalicelib.services.common import iso, parse_iso, utcnow
from chalicelib.settings import Settings


def decide(alert: dict[str, Any] | None, status: str, now_iso: str, reminder_days: int
           ) -> str | None:
    """Which alert a result calls for: "failure", "reminder", "recovery" or None."""
    state = (alert or {}).get("state", "ok")
    lost = (alert or {}).get("last_kind") if (alert or {}).get("publish_failed_at") else None
    if lost is not None and (lost == "recovery") == (status != "error"):
        # The last alert never went out (SNS failed through every retry) and still holds:
        # send it again rather than stay silent until the next reminder.
        return str(lost)
    if status == "error":
        if state != "error":
            return "failure"
        last = (alert or {}).get("last_sent_at")
        if last is None or parse_iso(now_iso) - parse_iso(last) >= timedelta(days=reminder_days):
            return "reminder"
        return None
    if state == "error":
        return "recovery"
    return None


def build_message(kind: str, item: ConnectionModel, provider_name: str,
                  result: dict[str, Any]) -> dict[str, Any]:
    """Subject, text body, JSON document and filterable attributes of one alert."""
    error = result.get("error") or {}
    code = error.get("code") or "none"
    when = result.get("tested_at") or iso(utcnow())
    title = {
        "failure": f"Connection '{item.name}' is failing ({code})",
        "reminder": f"Reminder: connection '{item.name}' is still failing ({code})",
        "recovery": f"Connection '{item.name}' works again",
    }[kind]
    lines = [
        title,
        "",
        f"Connection: {item.name} ({item.id})",
        f"Provider:   {provider_name}",
        f"Status:     {result['status']}",
        f"Tested at:  {when}",
    ]
    if kind != "recovery":
        lines += ["", f"What failed: {error.get('message', 'unknown error')}", "",
                  "What to try:"]
        lines += [f"  {i}. {step}" for i, step in enumerate(error.get("remediation") or [], 1)]
    text = redact("\n".join(lines))
    doc = {
        "type": f"connection.{kind}",
        "connection_id": item.id,
        "connection_name": item.name,
        "owner": item.owner,
        "provider": item.provider,
        "status": result["status"],
        "error_code": error.get("code"),
        "error_message": error.get("message"),
        "remediation": error.get("remediation") or [],
        "tested_at": when,
    }
    attributes = {
        "owner": item.owner, "connection_id": item.id, "provider": item.provider,
        "status": result["status"], "error_code": code, "kind": kind,
    }
    return {"subject": _subject(title), "text": text,
            "json": json.loads(redact(json.dumps(doc))), "attributes": attributes}


def rotation_message(item: ConnectionModel, provider_name: str, keys: list[str],
                     rotation_days: int, remediation: tuple[str, ...]) -> dict[str, Any]:
    """The alert that keys of a connection passed the rotation age (sent on the day they do,
    then every reminder period; owners with a digest get it as a digest line instead)."""
    names = ", ".join(keys)
    title = f"Rotate the key{'s' if len(keys) > 1 else ''} of connection '{item.name}' ({names})"
    lines = [title, "", f"Connection: {item.name} ({item.id})", f"Provider:   {provider_name}",
             f"Keys older than {rotation_days} days: {names}", "", "What to do:"]
    lines += [f"  {i}. {step}" for i, step in enumerate(remediation, 1)]
    doc = {"type": "connection.rotation_due", "connection_id": item.id,
           "connection_name": item.name, "owner": item.owner, "provider": item.provider,
           "keys": keys, "rotation_days": rotation_days, "remediation": list(remediation)}
    attributes = {"owner": item.owner, "connection_id": item.id, "provider": item.provider,
                  "status": item.status, "error_code": "rotation_due", "kind": "rotation_due"}
    return {"subject": _subject(title), "text": redact("\n".join(lines)),
            "json": json.loads(redact(json.dumps(doc))), "attributes": attributes}


def _subject(title: str) -> str:
    """An SNS Subject: no line breaks or control characters (SNS refuses the whole publish
    otherwise, and a connection name may hold a tab), at most 100 characters once redacted."""
    text = " ".join("".join(c if c.isprintable() else " " for c in redact(title)).split())
    return text if len(text) <= 100 else text[:97] + "..."


class AlertService:
    def __init__(self, sns_factory: Callable[[], Any], settings: Settings,
                 provider_name: Callable[[str], str], *, attempts: int = 3,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self._sns_factory = sns_factory
        self._settings = settings
        self._provider_name = provider_name
        self._attempts = attempts
        self._sleep = sleep
        self.published = 0
        self.failed = 0

    def on_result(self, item: ConnectionModel, result: dict[str, Any], trigger: str) -> None:
        if result.get("incident_id"):
            # The provider's failure, not the owner's: the admins got the incident's alert,
            # and the connection's alert state stays as it was.
            return
        now = iso(utcnow())
        kind = decide(item.alert, result["status"], now, self._settings.alert_reminder_days)
        if kind is None:
            return
        prior = item.alert
        state = "error" if result["status"] == "error" else "ok"
        new_state: dict[str, Any] = {
            "state": state,
            "last_sent_at": now,
            "last_kind": kind,
            # A reminder, or an alert sent again after a failed publish, keeps the start.
            "since": ((prior or {}).get("since") or now) if (prior or {}).get("state") == state
            else now,
        }
        if not self._claim(item, prior, new_state):
            return
        item.alert = new_state
        if not self.publish(build_message(kind, item, self._provider_name(item.provider),
                                          result)):
            failed_state = {**new_state, "publish_failed_at": now}
            try:
                item.update(actions=[ConnectionModel.alert.set(failed_state)])
            except Exception:  # noqa: BLE001 - the failure is already logged and counted
                logger.exception("could not record the alert failure")

    def _claim(self, item: ConnectionModel, prior: dict[str, Any] | None,
               new_state: dict[str, Any]) -> bool:
        """Move the alert state from ``prior`` to ``new_state`` unless someone else did."""
        cond = (ConnectionModel.alert.does_not_exist() if prior is None
                else ConnectionModel.alert == prior)
        try:
            item.update(actions=[ConnectionModel.alert.set(new_state)], condition=cond)
            return True
        except Exception as exc:
            if getattr(exc, "cause_response_code", None) == "ConditionalCheckFailedException":
                return False
            raise

    def publish(self, message: dict[str, Any]) -> bool:
        """Publish with retries; on final failure log, count, and return False."""
        doc = json.dumps(message["json"])
        payload = json.dumps({"default": message["text"], "email": message["text"],
                              "sqs": doc, "lambda": doc, "http": doc, "https": doc})
        attrs = {k: {"DataType": "String", "StringValue": str(v)}
                 for k, v in message["attributes"].items()}
        for attempt in range(1, self._attempts + 1):
            try:
                self._sns_factory().publish(
                    TopicArn=self._settings.alerts_topic_arn, Subject=message["subject"],
                    Message=payload, MessageStructure="json", MessageAttributes=attrs,
                )
                self.published += 1
                metrics.add_metric(name="AlertsSent", unit="Count", value=1)
                return True
            except Exception as exc:  # noqa: BLE001 - every failure is retried the same way
                logger.warning("alert publish failed", extra={
                    "attempt": attempt, "error": type(exc).__name__,
                    "connection_id": message["attributes"].get("connection_id"),
                    "kind": message["attributes"].get("kind")})
                if attempt < self._attempts:
                    self._sleep(min(2.0, 0.2 * 2 ** attempt))
        self.failed += 1
        metrics.add_metric(name=ALERT_PUBLISH_FAILURES, unit="Count", value=1)
        logger.error("alert not delivered after retries",
                     extra={"connection_id": message["attributes"].get("connection_id"),
                            "kind": message["attributes"].get("kind")})
        return False

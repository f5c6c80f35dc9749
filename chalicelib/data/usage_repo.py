"""Usage counters and the per-connection rate limit, in the usage table.

Items: ``rate#<YYYYMMDDHHMM>`` (fixed one-minute window, conditional ADD), ``month#YYYY-MM``
(quota totals, conditional ADD) and ``day#YYYY-MM-DD`` (requests, errors by code, tokens and a
latency histogram). Low-level client calls: the counters have dynamic attribute names.
"""

from __future__ import annotations

import math
from typing import Any

from chalicelib.data import aws


# Latency histogram: bucket k holds latencies in [2^(k/2), 2^((k+1)/2)) ms.
def latency_bucket(ms: int) -> int:
    return 0 if ms <= 1 else min(60, int(2 * math.log2(ms)))


def bucket_upper_ms(k: int) -> int:
    return round(2 ** ((k + 1) / 2))


class UsageRepository:
    def __init__(self, table: str) -> None:
        self._table = table

    def _ddb(self) -> Any:
        return aws.client("dynamodb")

    def take_rate_slot(self, connection_id: str, minute: str, limit: int, ttl: int) -> bool:
        """One request in this minute's window if fewer than ``limit`` were taken."""
        try:
            self._ddb().update_item(
                TableName=self._table,
                Key={"connection_id": {"S": connection_id}, "sk": {"S": f"rate#{minute}"}},
                UpdateExpression="ADD #n :one SET expires_at = :ttl",
                ConditionExpression="attribute_not_exists(#n) OR #n < :limit",
                ExpressionAttributeNames={"#n": "requests"},
                ExpressionAttributeValues={":one": {"N": "1"}, ":limit": {"N": str(limit)},
                                           ":ttl": {"N": str(ttl)}},
            )
            return True
        except self._ddb().exceptions.ConditionalCheckFailedException:
            return False

    def take_quota(self, connection_id: str, month: str, *, request_quota: int | None,
                   token_quota: int | None, ttl: int) -> dict[str, int] | None:
        """Count one request against the monthly quotas; None when a quota is used up."""
        conds = []
        values: dict[str, Any] = {":one": {"N": "1"}, ":zero": {"N": "0"},
                                  ":ttl": {"N": str(ttl)}}
        if request_quota is not None:
            conds.append("(attribute_not_exists(requests) OR requests < :rq)")
            values[":rq"] = {"N": str(request_quota)}
        if token_quota is not None:
            conds.append("(attribute_not_exists(tokens) OR tokens < :tq)")
            values[":tq"] = {"N": str(token_quota)}
        try:
            resp = self._ddb().update_item(
                TableName=self._table,
                Key={"connection_id": {"S": connection_id}, "sk": {"S": f"month#{month}"}},
                UpdateExpression="ADD requests :one, tokens :zero SET expires_at = :ttl",
                ConditionExpression=" AND ".join(conds) if conds else None,
                ExpressionAttributeValues=values,
                ReturnValues="ALL_NEW",
            ) if conds else None
        except self._ddb().exceptions.ConditionalCheckFailedException:
            return None
        if resp is None:
            return {}
        attrs = resp["Attributes"]
        return {"requests": int(attrs["requests"]["N"]), "tokens": int(attrs["tokens"]["N"])}

    def add_month_tokens(self, connection_id: str, month: str, tokens: int, ttl: int) -> None:
        self._ddb().update_item(
            TableName=self._table,
            Key={"connection_id": {"S": connection_id}, "sk": {"S": f"month#{month}"}},
            UpdateExpression="ADD tokens :t SET expires_at = :ttl",
            ExpressionAttributeValues={":t": {"N": str(tokens)}, ":ttl": {"N": str(ttl)}},
        )

    def record(self, connection_id: str, owner: str, day: str, *, latency_ms: int,
               input_tokens: int, output_tokens: int, error_code: str | None,
               ttl: int, credential_set: str | None = None) -> None:
        names = {"#b": f"h{latency_bucket(latency_ms)}"}
        expr = "ADD requests :one, input_tokens :in, output_tokens :out, #b :one"
        if credential_set:
            # Which credential set answered (failover), counted per set and day.
            names["#s"] = f"set_{credential_set}"
            expr += ", #s :one"
        values: dict[str, Any] = {":one": {"N": "1"}, ":in": {"N": str(input_tokens)},
                                  ":out": {"N": str(output_tokens)}, ":ttl": {"N": str(ttl)},
                                  ":owner": {"S": owner}}
        if error_code:
            names["#e"] = f"err_{error_code}"
            expr += ", errors :one, #e :one"
        self._ddb().update_item(
            TableName=self._table,
            Key={"connection_id": {"S": connection_id}, "sk": {"S": f"day#{day}"}},
            UpdateExpression=expr + " SET expires_at = :ttl, #o = :owner",
            ExpressionAttributeNames={**names, "#o": "owner"},
            ExpressionAttributeValues=values,
        )

    def days(self, connection_id: str, since_day: str) -> list[dict[str, Any]]:
        """The day items from ``since_day`` on (at most ~31 items: one Query)."""
        resp = self._ddb().query(
            TableName=self._table,
            KeyConditionExpression="connection_id = :c AND sk BETWEEN :a AND :b",
            ExpressionAttributeValues={":c": {"S": connection_id},
                                       ":a": {"S": f"day#{since_day}"},
                                       ":b": {"S": "day#9999"}},
        )
        return [{k: (int(v["N"]) if "N" in v else v.get("S")) for k, v in item.items()}
                for item in resp.get("Items", [])]

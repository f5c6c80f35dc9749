"""Usage counters and the per-connection rate limit, in the usage table.

Items: ``rate`` (a sliding one-minute window, see ``take_rate_slot``), ``month#YYYY-MM``
(quota totals, conditional ADD) and ``day#YYYY-MM-DD`` (requests, errors by code, tokens and a
latency histogram). Low-level client calls: the counters have dynamic attribute names.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Any

from chalicelib.data import aws


# Latency histogram: bucket k holds latencies in [2^(k/2), 2^((k+1)/2)) ms.
def latency_bucket(ms: int) -> int:
    return 0 if ms <= 1 else min(60, int(2 * math.log2(ms)))


def bucket_upper_ms(k: int) -> int:
    return round(2 ** ((k + 1) / 2))


RATE_ITEM_LIFETIME = timedelta(minutes=10)


def _wait_seconds(now: datetime, count: int, before: int, limit: int) -> int:
    """When one more request fits: once enough of last minute has left the window, or at
    the next minute when this minute alone is full."""
    second = now.second + now.microsecond / 1e6
    if count >= limit or before <= 0:
        return max(1, math.ceil(60 - second))
    # before * (1 - s/60) + count + 1 <= limit  <=>  s >= 60 * (1 - (limit - count - 1)/before)
    fits_at = 60.0 * (1.0 - (limit - count - 1) / before)
    return max(1, math.ceil(min(60.0, fits_at) - second))


class UsageRepository:
    def __init__(self, table: str) -> None:
        self._table = table

    def _ddb(self) -> Any:
        return aws.client("dynamodb")

    def take_rate_slot(self, connection_id: str, now: datetime, limit: int) -> int | None:
        """Take one request of a sliding one-minute window of ``limit``; None when taken,
        else the seconds to wait. The window is estimated the usual way: this minute's count
        plus last minute's, weighted by how much of last minute is still inside the window
        (a fixed window lets 2x ``limit`` through across a minute boundary; this does not).

        One item per connection: ``m`` (this minute), ``c`` (its count), ``p`` (last
        minute's). The usual call is one conditional ADD that returns the counts; a refusal
        gives its request back (a second write), and the first call of a minute moves the
        window (a second write, once a minute)."""
        minute = now.strftime("%Y%m%d%H%M")
        previous = (now - timedelta(minutes=1)).strftime("%Y%m%d%H%M")
        # The window item outlives the two minutes it counts; TTL removes it after that.
        ttl = int((now + RATE_ITEM_LIFETIME).timestamp())
        # The part of last minute still inside the window that ends now.
        weight = 1.0 - (now.second + now.microsecond / 1e6) / 60.0
        ddb = self._ddb()
        key = {"connection_id": {"S": connection_id}, "sk": {"S": "rate"}}
        names = {"#m": "m", "#c": "c", "#p": "p"}
        for _attempt in range(4):
            try:
                new = ddb.update_item(
                    TableName=self._table, Key=key,
                    UpdateExpression="ADD #c :one SET expires_at = :ttl",
                    ConditionExpression="#m = :m",
                    ExpressionAttributeNames={"#m": "m", "#c": "c"},
                    ExpressionAttributeValues={":one": {"N": "1"}, ":m": {"S": minute},
                                               ":ttl": {"N": str(ttl)}},
                    ReturnValues="ALL_NEW",
                    ReturnValuesOnConditionCheckFailure="ALL_OLD")["Attributes"]
            except ddb.exceptions.ConditionalCheckFailedException as exc:
                old = exc.response.get("Item") or {}
                # The first request of this minute: move the window, then count as above.
                moved = old.get("m", {}).get("S") == previous
                try:
                    new = ddb.update_item(
                        TableName=self._table, Key=key,
                        # p first: it takes the count of the minute being left.
                        UpdateExpression="SET #p = " + ("#c" if moved else ":zero")
                                         + ", #m = :m, #c = :one, expires_at = :ttl",
                        ConditionExpression=("#m = :prev" if moved else
                                             "attribute_not_exists(#m) OR "
                                             "(#m <> :m AND #m <> :prev)"),
                        ExpressionAttributeNames=names,
                        ExpressionAttributeValues={
                            ":one": {"N": "1"}, ":m": {"S": minute}, ":prev": {"S": previous},
                            ":ttl": {"N": str(ttl)},
                            **({} if moved else {":zero": {"N": "0"}})},
                        ReturnValues="ALL_NEW")["Attributes"]
                except ddb.exceptions.ConditionalCheckFailedException:
                    continue  # another request moved it first: count in the new minute
            count, before = int(new["c"]["N"]), int(new.get("p", {}).get("N", "0"))
            if before * weight + count <= limit:
                return None
            ddb.update_item(
                TableName=self._table, Key=key, UpdateExpression="ADD #c :minus",
                ConditionExpression="#m = :m", ExpressionAttributeNames={"#m": "m", "#c": "c"},
                ExpressionAttributeValues={":minus": {"N": "-1"}, ":m": {"S": minute}})
            return _wait_seconds(now, count - 1, before, limit)
        # Four rounds lost to other requests moving the window: refuse rather than guess.
        return 1

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

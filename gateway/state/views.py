"""What the control plane reports, as JSON: API summaries and descriptions, call logs, usage."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from gateway.state.records import ApiRow


def iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def api_summary(api: ApiRow) -> dict[str, Any]:
    return {
        "id": api.id,
        "name": api.name,
        "status": "paused" if api.paused else "active",
        "paused": api.paused,
        "owner": api.owner,
        "version": api.active_version,
        "active_version": api.active_version,
        "endpoint": f"/run/{api.id}",
        "created_at": iso(api.created_at),
        "updated_at": iso(api.updated_at),
    }


def _empty_usage() -> dict[str, Any]:
    return {"requests": 0, "errors": {}, "fuel": 0, "bytes_in": 0, "bytes_out": 0, "duration_ms": 0.0}


def _add_usage(bucket: dict[str, Any], row: dict[str, Any]) -> None:
    bucket["requests"] += row["requests"]
    if row["outcome"] != "OK":
        bucket["errors"][row["outcome"]] = bucket["errors"].get(row["outcome"], 0) + row["requests"]
    for name in ("fuel", "bytes_in", "bytes_out"):
        bucket[name] += row[name]
    bucket["duration_ms"] = round(bucket["duration_ms"] + row["duration_ms"], 3)


def log_entry(row: dict[str, Any]) -> dict[str, Any]:
    """One invocation as `GET /v1/apis/{id}/logs` lists it."""
    return {
        "id": row["id"],
        "time": iso(row["time"]),
        "request_id": row["request_id"],
        "version": row["version"],
        "method": row["method"],
        "path": row["path"],
        "route": row["route"],
        "status": row["status"],
        "outcome": row["outcome"],
        "fuel_used": row["fuel_used"],
        "duration_ms": round(row["duration_ms"], 3),
        "bytes_in": row["bytes_in"],
        "bytes_out": row["bytes_out"],
        "stdout": row["stdout"],
        "stderr": row["stderr"],
        "logs_truncated": bool(row["logs_truncated"]),
        "error": row["error_detail"],
    }


def usage_report(
    api_id: str, hourly: list[dict[str, Any]], key_rows: list[dict[str, Any]], day: str, quota: dict | None
) -> dict[str, Any]:
    """`GET /v1/apis/{id}/usage`: per hour and in total by outcome, and each key's day and month."""
    hours: dict[int, dict[str, Any]] = {}
    totals = _empty_usage()
    for row in hourly:
        hour = hours.setdefault(row["hour"], {"hour": iso(row["hour"]), **_empty_usage()})
        for bucket in (hour, totals):
            _add_usage(bucket, row)
    keys: dict[str, dict[str, Any]] = {}
    for row in key_rows:
        period = "day" if row["period"] == day else "month"
        keys.setdefault(row["key_id"], {"key_id": row["key_id"]})[period] = {
            "period": row["period"].split(":", 1)[1], "requests": row["requests"], "fuel": row["fuel"]
        }
    return {"api_id": api_id, "hours": list(hours.values()), "totals": totals, "quota": quota, "keys": list(keys.values())}

"""Hooks of the attack run (schemathesis.toml beside this file).

`failed_at` of a DLQ report must fall between 2000-01-01 and a day after the server's clock. The
document says so in words (and bounds the year's first digit); a bound that moves with the clock is
no JSON Schema, so generated reports whose `failed_at` is past it are left out rather than counted
as valid requests the server refused. Reports with any other `failed_at` are sent as generated.
"""

from datetime import datetime, timedelta, timezone

import schemathesis


def _too_late(value) -> bool:
    if not isinstance(value, str):
        return False
    try:
        time = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return False
    if time.tzinfo is None:
        return False
    return time > datetime.now(timezone.utc) + timedelta(hours=23)


@schemathesis.hook("filter_body").apply_to(method="POST", path="/v1/dlq")
def plausible_failure_time(context, body) -> bool:
    return not (isinstance(body, dict) and _too_late(body.get("failed_at")))

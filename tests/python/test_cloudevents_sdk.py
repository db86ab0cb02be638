"""End to end with the real CloudEvents Python SDK: what its users send is what causeway must take.

The SDK 2.x API is used: `cloudevents.core.v1.event.CloudEvent` with the HTTP binding
(`cloudevents.core.bindings.http.to_structured` / `to_binary`) and `JSONFormat`. One test also uses
the 1.x-compatible API (`cloudevents.v1`), which most existing producers still call.
"""

import json
import uuid
from datetime import datetime, timedelta, timezone

import pytest
import requests
from cloudevents.core.bindings import http as ce_http
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent

JSON = JSONFormat()
T0 = datetime(2026, 11, 23, 10, 15, 0, 123456, tzinfo=timezone.utc)


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4()}"


def traceparent() -> str:
    return f"00-{uuid.uuid4().hex}-{uuid.uuid4().hex[:16]}-01"


def make_event(
    event_type: str = "OrderPlaced",
    source: str = "order-service",
    correlation: str | None = None,
    cause: str | None = None,
    time: datetime = T0,
    sequence: int = 1,
    data: dict | None = None,
) -> CloudEvent:
    """An SDK event with every causeway extension attribute set (correlation id unless `None`)."""
    order = uid("ord")
    attributes = {
        "id": str(uuid.uuid4()),
        "type": event_type,
        "source": source,
        "time": time,
        "subject": order,
        "datacontenttype": "application/json",
        "traceparent": traceparent(),
        "sequence": sequence,
    }
    if correlation is not None:
        attributes["correlationid"] = correlation
    if cause is not None:
        attributes["causationid"] = cause
    return CloudEvent(attributes, data if data is not None else {"orderId": order, "amount": 12.5})


def post(server: str, message) -> requests.Response:
    """Sends an SDK `HTTPMessage` (headers + body) exactly as the SDK built it."""
    return requests.post(f"{server}/v1/events", data=message.body, headers=message.headers, timeout=10)


def post_batch(server: str, events: list[CloudEvent]) -> requests.Response:
    # The SDK has no batch helper: neither `cloudevents.core.bindings.http` nor `JSONFormat` writes
    # `application/cloudevents-batch+json`. Per the CloudEvents JSON format (§4, batch), a batch is
    # a JSON array of structured events, so it is built from the SDK's own `JSONFormat().write()`.
    body = b"[" + b",".join(JSON.write(e) for e in events) + b"]"
    headers = {"content-type": "application/cloudevents-batch+json"}
    return requests.post(f"{server}/v1/events", data=body, headers=headers, timeout=10)


def all_accepted(*ids: str) -> dict:
    return {
        "accepted": len(ids),
        "duplicates": 0,
        "rejected": 0,
        "results": [{"id": i, "status": "accepted"} for i in ids],
    }


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def get_event(server: str, event_id: str) -> dict:
    response = requests.get(f"{server}/v1/events/{event_id}", timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    return response.json()


def assert_stored(server: str, event: CloudEvent) -> dict:
    """The canonical form stored for `event` carries every attribute the SDK sent, typed."""
    stored = get_event(server, event.get_id())
    assert stored["specversion"] == "1.0"
    for name in ("id", "source", "type", "subject", "datacontenttype", "correlationid", "traceparent"):
        assert stored[name] == event.get_attributes()[name], name
    assert stored.get("causationid") == event.get_attributes().get("causationid")
    assert parse_time(stored["time"]) == event.get_time()
    # An integer attribute stays an integer, whether it came as a JSON number or a header string.
    assert type(stored["sequence"]) is int and stored["sequence"] == event.get_extension("sequence")
    assert stored["data"] == event.get_data()
    return stored


# --- the three HTTP content modes -----------------------------------------------------------------


def test_structured_mode(server):
    event = make_event(correlation=uid("corr"), sequence=3)
    message = ce_http.to_structured(event, JSON)
    assert message.headers["content-type"] == "application/cloudevents+json"

    response = post(server, message)

    assert response.status_code == 200, response.text
    assert response.json() == all_accepted(event.get_id())
    assert_stored(server, event)


def test_binary_mode_with_percent_encoded_headers(server):
    # A space and a non-ASCII letter make the SDK percent-encode the header values (HTTP binding §3.1.3.2).
    event = make_event(correlation=f"checkout {uuid.uuid4()} für", sequence=7)
    message = ce_http.to_binary(event, JSON)
    assert message.headers["ce-specversion"] == "1.0"
    assert message.headers["ce-sequence"] == "7"
    assert "%20" in message.headers["ce-correlationid"]
    assert json.loads(message.body) == event.get_data(), "binary mode: the body is the data alone"

    response = post(server, message)

    assert response.status_code == 200, response.text
    assert response.json() == all_accepted(event.get_id())
    stored = assert_stored(server, event)
    assert stored["correlationid"].endswith(" für")


def test_batch_mode(server):
    correlation = uid("corr")
    events = [make_event(correlation=correlation, time=T0 + timedelta(seconds=i), sequence=i + 1) for i in range(3)]

    response = post_batch(server, events)

    assert response.status_code == 200, response.text
    assert response.json() == all_accepted(*(e.get_id() for e in events)), "one result per event, in input order"
    for event in events:
        assert_stored(server, event)


def test_legacy_sdk_api_structured_and_binary(server):
    """The 1.x-compatible API (`cloudevents.v1`) that most existing producers call."""
    from cloudevents.v1.conversion import to_binary, to_structured
    from cloudevents.v1.http import CloudEvent as LegacyCloudEvent

    correlation = uid("corr")
    sent = []
    for convert in (to_structured, to_binary):
        attributes = {
            "type": "OrderPlaced",
            "source": "order-service",
            "correlationid": correlation,
            # The 1.x API puts extension values in headers as they are, and requests refuses an int
            # header, so producers on it send integers as strings; causeway stores an integer.
            "sequence": str(len(sent) + 1),
            "datacontenttype": "application/json",
        }
        event = LegacyCloudEvent(attributes, {"orderId": uid("ord")})
        headers, body = convert(event)
        response = requests.post(f"{server}/v1/events", data=body, headers=headers, timeout=10)
        assert response.status_code == 200, f"{convert.__name__}: {response.text}"
        assert response.json() == all_accepted(event["id"])
        stored = get_event(server, event["id"])
        assert (stored["source"], stored["type"], stored["correlationid"]) == ("order-service", "OrderPlaced", correlation)
        assert stored["sequence"] == len(sent) + 1
        assert stored["data"] == event.data
        sent.append(event)


# --- duplicates -----------------------------------------------------------------------------------


def test_same_event_twice_is_a_duplicate_stored_once(server, sql):
    event = make_event(correlation=uid("corr"))
    first = post(server, ce_http.to_structured(event, JSON))
    assert first.status_code == 200, first.text
    assert first.json() == all_accepted(event.get_id())

    again = post(server, ce_http.to_structured(event, JSON))
    # The same event re-sent in the other content mode is the same event (same id and source).
    again_binary = post(server, ce_http.to_binary(event, JSON))

    duplicate = {"accepted": 0, "duplicates": 1, "rejected": 0, "results": [{"id": event.get_id(), "status": "duplicate"}]}
    assert again.status_code == 200, again.text
    assert again.json() == duplicate
    assert again_binary.status_code == 200, again_binary.text
    assert again_binary.json() == duplicate
    answer = sql(f"SELECT count(*) FROM event_lineage WHERE event_id = '{event.get_id()}'")
    assert answer["rows"] == [[1]]
    assert_stored(server, event)


# --- the other JSON shapes ------------------------------------------------------------------------


def metadata_payload(correlation: str, cause: str | None = None) -> dict:
    """The hand-rolled `metadata/payload` shape of PRODUCT §2."""
    return {
        "metadata": {
            "eventId": str(uuid.uuid4()),
            "eventType": "PaymentProcessed",
            "correlationId": correlation,
            "causationId": cause,
            "timestamp": "2026-11-23T11:15:00.5+01:00",
            "source": "payment-service",
        },
        "payload": {"orderId": uid("ord"), "amount": 99.95, "currency": "EUR"},
        "entityId": uid("pay"),
    }


def test_metadata_payload_shape_becomes_canonical(server):
    correlation = uid("corr")
    cause = str(uuid.uuid4())
    event = metadata_payload(correlation, cause)
    meta = event["metadata"]

    response = requests.post(f"{server}/v1/events", json=event, timeout=10)

    assert response.status_code == 200, response.text
    assert response.json() == all_accepted(meta["eventId"])
    stored = get_event(server, meta["eventId"])
    assert stored["specversion"] == "1.0"
    assert stored["id"] == meta["eventId"]
    assert stored["type"] == "PaymentProcessed"
    assert stored["source"] == "payment-service"
    assert stored["correlationid"] == correlation
    assert stored["causationid"] == cause
    assert stored["subject"] == event["entityId"], "entityId is the aggregate id: the subject"
    assert stored["data"] == event["payload"]
    assert stored["datacontenttype"] == "application/json"
    assert parse_time(stored["time"]) == datetime(2026, 11, 23, 10, 15, 0, 500000, tzinfo=timezone.utc)
    assert stored["time"].endswith("Z"), "time is normalised to UTC"
    assert "metadata" not in stored and "payload" not in stored


def test_ndjson_mixes_shapes(server, sql):
    correlation = uid("corr")
    first = make_event(correlation=correlation, time=T0)
    hand_rolled = metadata_payload(correlation, cause=first.get_id())
    last = make_event("OrderShipped", "shipping-service", correlation, hand_rolled["metadata"]["eventId"], T0 + timedelta(hours=2))
    body = b"\n".join([JSON.write(first), json.dumps(hand_rolled).encode(), JSON.write(last)]) + b"\n"

    response = requests.post(
        f"{server}/v1/events", data=body, headers={"content-type": "application/x-ndjson"}, timeout=10
    )

    ids = [first.get_id(), hand_rolled["metadata"]["eventId"], last.get_id()]
    assert response.status_code == 200, response.text
    assert response.json() == all_accepted(*ids)
    assert_stored(server, first)
    assert_stored(server, last)
    answer = sql(
        f"SELECT event_id, event_type, source_service, causation_id FROM event_lineage "
        f"WHERE correlation_id = '{correlation}' ORDER BY timestamp"
    )
    assert answer["rows"] == [
        [ids[0], "OrderPlaced", "order-service", None],
        [ids[1], "PaymentProcessed", "payment-service", ids[0]],
        [ids[2], "OrderShipped", "shipping-service", ids[1]],
    ]


def test_ndjson_bad_line_is_rejected_alone_and_kept(server, sql):
    correlation = uid("corr")
    good = [make_event(correlation=correlation, time=T0 + timedelta(seconds=i)) for i in range(2)]
    broken = '{"specversion": "1.0", "id": "not closed"'
    body = b"\n".join([JSON.write(good[0]), broken.encode(), JSON.write(good[1])])

    response = requests.post(
        f"{server}/v1/events", data=body, headers={"content-type": "application/x-ndjson"}, timeout=10
    )

    assert response.status_code == 207, "some stored, some refused: Multi-Status"
    answer = response.json()
    assert (answer["accepted"], answer["duplicates"], answer["rejected"]) == (2, 0, 1)
    results = answer["results"]
    assert results[0] == {"id": good[0].get_id(), "status": "accepted"}
    assert results[2] == {"id": good[1].get_id(), "status": "accepted"}
    assert results[1]["status"] == "rejected"
    assert results[1]["error_type"] == "malformed_json"
    assert "not valid JSON" in results[1]["reason"]
    dlq = sql(f"SELECT error_type, original_event FROM dlq_events WHERE id = {int(results[1]['dlq_id'])}")
    assert dlq["rows"] == [["malformed_json", broken]], "the refused line is kept byte for byte"


# --- causation ------------------------------------------------------------------------------------


def post_chain(server: str) -> tuple[str, list[CloudEvent]]:
    """root → child → grandchild in one correlation, sent out of order (grandchild first)."""
    correlation = uid("corr")
    root = make_event("OrderPlaced", "order-service", correlation, None, T0)
    child = make_event("PaymentProcessed", "payment-service", correlation, root.get_id(), T0 + timedelta(seconds=1))
    grandchild = make_event("OrderShipped", "shipping-service", correlation, child.get_id(), T0 + timedelta(seconds=2))
    for event in (grandchild, root, child):
        response = post(server, ce_http.to_structured(event, JSON))
        assert response.status_code == 200, response.text
        assert response.json() == all_accepted(event.get_id())
    return correlation, [root, child, grandchild]


def test_causation_chain_tree_descendants_and_root(server):
    correlation, (root, child, grandchild) = post_chain(server)

    response = requests.get(f"{server}/v1/correlations/{correlation}", timeout=10)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["correlation_id"] == correlation
    assert body["truncated"] is False
    assert [e["id"] for e in body["events"]] == [root.get_id(), child.get_id(), grandchild.get_id()], "by time"
    assert body["events"][1]["causationid"] == root.get_id()
    assert len(body["tree"]) == 1, "one root"
    top = body["tree"][0]
    assert (top["event_id"], top["event_type"], top["source"]) == (root.get_id(), "OrderPlaced", "order-service")
    assert parse_time(top["time"]) == root.get_time()
    assert "orphan" not in top, "the root has no cause, so it is not an orphan"
    [middle] = top["children"]
    assert (middle["event_id"], middle["event_type"], middle["source"]) == (child.get_id(), "PaymentProcessed", "payment-service")
    [leaf] = middle["children"]
    assert (leaf["event_id"], leaf["event_type"]) == (grandchild.get_id(), "OrderShipped")
    assert leaf["children"] == []

    response = requests.get(f"{server}/v1/events/{root.get_id()}/descendants", timeout=10)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["event_id"] == root.get_id()
    assert body["count"] == 2
    assert body["truncated"] is False
    assert [e["id"] for e in body["events"]] == [child.get_id(), grandchild.get_id()]
    assert body["events"][1]["data"] == grandchild.get_data(), "descendants are full canonical events"

    response = requests.get(f"{server}/v1/events/{grandchild.get_id()}/descendants", timeout=10)
    assert response.status_code == 200, response.text
    assert (response.json()["count"], response.json()["events"]) == (0, [])

    response = requests.get(f"{server}/v1/events/{grandchild.get_id()}/root", timeout=10)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["hops"] == 2
    assert body["complete"] is True
    assert body["root"] == get_event(server, root.get_id()), "the root is the canonical event"
    assert body["root"]["id"] == root.get_id()

    response = requests.get(f"{server}/v1/events/{root.get_id()}/root", timeout=10)
    assert response.status_code == 200, response.text
    assert (response.json()["root"]["id"], response.json()["hops"]) == (root.get_id(), 0)


def test_seed_query_verbatim(server, sql):
    correlation, chain = post_chain(server)

    answer = sql(
        "SELECT event_id, event_type, source_service, timestamp, causation_id FROM event_lineage "
        f"WHERE correlation_id = '{correlation}' ORDER BY timestamp"
    )

    assert answer["columns"] == ["event_id", "event_type", "source_service", "timestamp", "causation_id"]
    expected = [
        [e.get_id(), e.get_type(), e.get_source(), e.get_attributes().get("causationid")] for e in chain
    ]
    assert [[r[0], r[1], r[2], r[4]] for r in answer["rows"]] == expected
    assert [parse_time(r[3]) for r in answer["rows"]] == [e.get_time() for e in chain]


# --- refusal --------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["structured", "binary"])
def test_missing_correlation_is_refused_and_dead_lettered(server, sql, mode):
    event = make_event(correlation=None)
    assert "correlationid" not in event.get_attributes()
    convert = ce_http.to_structured if mode == "structured" else ce_http.to_binary

    response = post(server, convert(event, JSON))

    assert response.status_code == 400, response.text
    body = response.json()
    assert body["error"]["code"] == "missing_correlation"
    assert event.get_id() in body["error"]["message"], "the message names the event"
    assert "correlationid" in body["error"]["message"], "the message says what to set"
    assert (body["accepted"], body["duplicates"], body["rejected"]) == (0, 0, 1)
    [result] = body["results"]
    assert result["id"] == event.get_id()
    assert result["status"] == "rejected"
    assert result["error_type"] == "missing_correlation"
    assert result["reason"]

    dlq = sql(f"SELECT error_type, original_event FROM dlq_events WHERE id = {int(result['dlq_id'])}")
    [[error_type, original]] = dlq["rows"]
    assert error_type == "missing_correlation"
    assert event.get_id() in original, "the DLQ record keeps the input as received"

    missing = requests.get(f"{server}/v1/events/{event.get_id()}", timeout=10)
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"


def test_binary_mode_bad_data_is_dead_lettered_with_its_attributes(server, sql):
    event = make_event(correlation=uid("corr"))
    message = ce_http.to_binary(event, JSON)

    response = requests.post(f"{server}/v1/events", data=b'{"orderId": ', headers=message.headers, timeout=10)

    assert response.status_code == 400, response.text
    dlq_id = response.json().get("dlq_id") or response.json()["results"][0]["dlq_id"]
    dlq = sql(f"SELECT correlation_id, original_event FROM dlq_events WHERE id = {int(dlq_id)}")
    [[correlation, original]] = dlq["rows"]
    assert correlation == event.get_extension("correlationid"), "findable by its correlation id"
    assert event.get_id() in original, "the record keeps the attributes, so the event can be replayed"

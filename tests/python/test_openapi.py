"""docs/openapi.yaml, as the server serves it, is a valid OpenAPI 3.1 document that matches the router:
every documented operation is routed and answers a documented status with a body matching the
documented schema, and every route in crates/server/src/api/mod.rs is documented."""

import re
import uuid
from datetime import datetime, timezone
from pathlib import Path

import pytest
import requests
import yaml
from jsonschema import Draft202012Validator
from openapi_spec_validator import OpenAPIV31SpecValidator, validate
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

REPO = Path(__file__).resolve().parents[2]
SPEC_URI = "urn:causeway:openapi"
METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")


@pytest.fixture
def spec(server):
    response = requests.get(f"{server}/openapi.yaml", timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/yaml")
    # Named, so a client does not guess the encoding from the bytes (the text is not ASCII).
    assert "charset=utf-8" in response.headers["content-type"]
    document = yaml.safe_load(response.text)
    assert isinstance(document, dict), "the served document is empty or not a YAML mapping"
    return document


def pointer(*parts: str) -> str:
    return "".join("/" + p.replace("~", "~0").replace("/", "~1") for p in parts)


def is_no_route(response: requests.Response) -> bool:
    """The router's fallback: a JSON 404 whose message starts with `no route`."""
    if response.status_code != 404:
        return False
    try:
        return response.json()["error"]["message"].startswith("no route")
    except (ValueError, KeyError, TypeError):
        return False


def schema_errors(spec: dict, location: str, instance) -> list[str]:
    """Validates `instance` against the schema at JSON pointer `location` in the document."""
    registry = Registry().with_resource(SPEC_URI, Resource.from_contents(spec, default_specification=DRAFT202012))
    validator = Draft202012Validator({"$ref": f"{SPEC_URI}#{location}"}, registry=registry)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(instance)]


def check_request(spec: dict, path: str, method: str, media: str, body) -> None:
    """A request the server accepts matches the documented request body schema."""
    content = spec["paths"][path][method]["requestBody"]["content"]
    assert media in content, f"{method.upper()} {path}: request media {media!r} not documented"
    errors = schema_errors(spec, pointer("paths", path, method, "requestBody", "content", media, "schema"), body)
    assert not errors, f"{method.upper()} {path} request does not match its schema: {errors}"


def check_documented(spec: dict, path: str, method: str, response: requests.Response) -> None:
    """The status is documented for the operation, and so is the content type; a JSON body
    validates against the documented schema."""
    operation = spec["paths"][path][method]
    status = str(response.status_code)
    assert status in operation["responses"], (
        f"{method.upper()} {path} answered {status}, which the document does not list: {response.text[:500]}"
    )
    documented = operation["responses"][status]
    location = pointer("paths", path, method, "responses", status)
    if "$ref" in documented:
        location = documented["$ref"].removeprefix("#")
        documented = spec["components"]["responses"][location.rsplit("/", 1)[1]]
    content = documented.get("content", {})
    media = response.headers.get("content-type", "").split(";")[0].strip()
    if not content:
        assert not response.content, f"{method.upper()} {path} {status}: documented without a body"
        return
    assert media in content, f"{method.upper()} {path} {status}: answered {media!r}, documented {list(content)}"
    if media == "application/json" and "schema" in content[media]:
        errors = schema_errors(spec, location + pointer("content", media, "schema"), response.json())
        assert not errors, f"{method.upper()} {path} {status} does not match its schema: {errors}"


def event(event_id: str, correlation: str, cause: str | None = None, second: int = 0) -> dict:
    return {
        "specversion": "1.0",
        "id": event_id,
        "source": "order-service",
        "type": "OrderPlaced" if cause is None else "OrderConfirmed",
        "time": datetime(2026, 11, 23, 10, 0, second, tzinfo=timezone.utc).isoformat(),
        "subject": "ord-1",
        "correlationid": correlation,
        "causationid": cause,
        "traceparent": f"00-{uuid.uuid4().hex}-{uuid.uuid4().hex[:16]}-01",
        "sequence": second + 1,
        "region": "eu",
        "data": {"orderId": "ord-1"},
    }


def test_document_is_valid_openapi_3_1(spec):
    assert spec["openapi"].startswith("3.1.")
    validate(spec, cls=OpenAPIV31SpecValidator)
    assert spec["paths"], "the document lists no path"


def test_every_route_is_documented_and_every_documented_operation_is_routed(spec):
    source = (REPO / "crates" / "server" / "src" / "api" / "mod.rs").read_text()
    routes = set()
    for path, handlers in re.findall(r'\.route\(\s*"([^"]+)"\s*,(.*?)\)\s*\n', source, re.S):
        for method in re.findall(r"\b(get|post|put|delete|patch|head|options|trace)\(", handlers):
            routes.add((method, path))
    assert routes, "no .route(...) found in crates/server/src/api/mod.rs"
    documented = {(m, p) for p, item in spec["paths"].items() for m in item if m in METHODS}
    assert sorted(routes - documented) == [], "routes missing from docs/openapi.yaml"
    assert sorted(documented - routes) == [], "documented operations the router does not have"


def test_every_documented_operation_answers_as_documented(server, spec):
    # Seed a root, its child and a hand-rolled grandchild so that the read operations answer 200
    # with real bodies, and an event without a correlation id so that the DLQ has a record.
    correlation = f"corr-{uuid.uuid4()}"
    root_id, child_id, refused_id = str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4())
    refused = {**event(refused_id, correlation), "correlationid": None}
    hand_rolled = {
        "metadata": {"eventId": str(uuid.uuid4()), "eventType": "OrderShipped", "correlationId": correlation,
                     "causationId": child_id, "timestamp": "2026-11-23T10:00:02Z", "source": "shipping-service",
                     "tenant-id": "acme"},
        "payload": {"orderId": "ord-1"},
        "entityId": "ord-1",
    }
    seed = [event(root_id, correlation), event(child_id, correlation, cause=root_id, second=1), hand_rolled, refused]
    params = {"id": child_id}
    path_params = {
        "/v1/correlations/{id}": {"id": correlation},
        # The test server runs without a model: the documented 404 that says how to load one.
        "/v1/journeys/{journey}/{key}": {"journey": "order", "key": "ord-1"},
        "/v1/aggregates/{kind}/{id}": {"kind": "Order", "id": "ord-1"},
        # The web UI's pages of the same things.
        "/correlations/{id}": {"id": correlation},
        "/journeys/{journey}/{key}": {"journey": "order", "key": "ord-1"},
        "/canvas/notes/{id}": {"id": "event-OrderCreated"},
        "/runbooks/{section}/{name}": {"section": "findings", "name": "missing_reaction"},
    }
    bodies = {
        ("post", "/v1/events"): {"json": seed},
        ("post", "/v1/sql"): {
            "json": {"query": f"SELECT event_id, timestamp FROM event_lineage WHERE correlation_id = '{correlation}'"}
        },
        ("post", "/v1/dlq"): {
            "json": {"event": event(str(uuid.uuid4()), correlation), "consumer": "notification-service",
                     "source_topic": "shipments", "error_type": "KeyError", "error_message": "'customerEmail'"}
        },
        ("post", "/v1/dlq/replay"): {"json": {"dry_run": True, "limit": 5}},
        ("post", "/v1/dlq/{id}/replay"): {"json": {"dry_run": True}},
        ("post", "/v1/dlq/{id}/discard"): {"json": {"reason": "checked by the API test"}},
        ("post", "/v1/dlq/{id}/resolve"): {"json": {"reason": "checked by the API test"}},
        ("post", "/v1/silences"): {
            "json": {"matchers": {"slo": "checkout"}, "duration": "2h", "comment": "checked by the API test", "created_by": "api-test"}
        },
        ("post", "/v1/tokens"): {"json": {"role": "reader", "name": "api-test"}},
        ("post", "/sign-in"): {"data": {"token": "cw_0000000000_not-a-token", "next": "/dlq"}},
    }
    operations = [(p, m) for p, item in spec["paths"].items() for m in item if m in METHODS]
    # Ingest first, report a failure and make a token, so the reads find the seed, the DLQ record
    # and the token.
    first = [("/v1/events", "post"), ("/v1/dlq", "post"), ("/v1/silences", "post"), ("/v1/tokens", "post")]
    operations.sort(key=lambda op: first.index(op) if op in first else len(first))
    for (method, path), body in bodies.items():
        if "json" not in body:
            continue
        sent = body["json"]
        if (method, path) == ("post", "/v1/events"):
            # The refused event breaks the document on purpose (no correlation id).
            sent = [e for e in sent if e is not refused]
        check_request(spec, path, method, "application/json", sent)
    answered = {}
    for path, method in operations:
        values = path_params.get(path, params)
        if path.startswith("/v1/dlq/{id}") or path == "/dlq/{id}":
            values = {"id": str(answered[("post", "/v1/dlq")].json()["id"])}
        if path == "/v1/silences/{id}":
            values = {"id": answered[("post", "/v1/silences")].json()["id"]}
        if path == "/v1/tokens/{id}":
            values = {"id": answered[("post", "/v1/tokens")].json()["id"]}
        url = server + re.sub(r"\{(\w+)\}", lambda m: values[m.group(1)], path)
        bodyless = {("post", "/v1/model/reload"), ("delete", "/v1/silences/{id}"), ("post", "/sign-out"), ("delete", "/v1/tokens/{id}")}
        assert (method, path) in bodies or method == "get" or (method, path) in bodyless, f"add a request body for {method.upper()} {path}"
        # Redirects (sign-in, sign-out, search) are answers to check, not to follow.
        response = requests.request(method, url, timeout=10, allow_redirects=False, **bodies.get((method, path), {}))
        assert not is_no_route(response), f"{method.upper()} {path} is documented but not routed"
        assert response.status_code != 405, f"{method.upper()} {path} is documented but the route has no {method.upper()}"
        check_documented(spec, path, method, response)
        answered[(method, path)] = response

    # The seeded reads found what was seeded (they were not answered 404 by accident).
    assert answered[("post", "/v1/events")].status_code == 207
    assert [r["status"] for r in answered[("post", "/v1/events")].json()["results"]] == ["accepted", "accepted", "accepted", "rejected"]
    assert refused_id in [r["event_id"] for r in answered[("get", "/v1/dlq")].json()["records"]]
    assert answered[("post", "/v1/dlq")].status_code == 201
    assert answered[("get", "/v1/dlq/{id}")].json()["record"]["consumer"] == "notification-service"
    original = answered[("get", "/v1/dlq/{id}/original")]
    assert original.headers["content-type"] == "application/octet-stream"
    assert original.headers["x-causeway-original-content-type"] == "application/cloudevents+json"
    assert answered[("get", "/v1/events/{id}")].json()["id"] == child_id
    assert answered[("get", "/v1/events/{id}/root")].json()["root"]["id"] == root_id
    assert answered[("get", "/v1/events/{id}/descendants")].json()["events"][0]["tenantid"] == "acme"
    assert answered[("get", "/v1/correlations/{id}")].json()["tree"][0]["children"][0]["event_id"] == child_id
    assert answered[("post", "/v1/sql")].json()["rows"][0][0] == root_id
    # The silence was created, then expired; the notifier is off without receivers.
    assert answered[("post", "/v1/silences")].status_code == 201
    assert answered[("delete", "/v1/silences/{id}")].json()["state"] == "expired"
    assert answered[("get", "/v1/alerts")].json()["notifier"] == "off"
    # With auth off, signing in only goes on to `next`; the token made was listed, then revoked.
    assert answered[("post", "/sign-in")].headers["location"] == "/dlq"
    made = answered[("post", "/v1/tokens")].json()
    assert made["token"].startswith(f"cw_{made['id']}_") and made["role"] == "reader"
    assert made["id"] in [t["id"] for t in answered[("get", "/v1/tokens")].json()["tokens"]]
    assert answered[("delete", "/v1/tokens/{id}")].json()["revoked_at"]
    assert answered[("get", "/v1/audit")].json()["entries"], "the writes above are audited"


@pytest.mark.parametrize(
    "name, method, path, kwargs, status",
    [
        ("partial", "post", "/v1/events",
         {"data": '{"specversion":"1.0","id":"ok-ID","source":"s","type":"T","time":"2026-11-23T10:00:00Z","correlationid":"c"}\nnot json\n',
          "headers": {"content-type": "application/x-ndjson"}}, 207),
        ("all rejected", "post", "/v1/events",
         {"json": [{"specversion": "1.0", "id": "ID", "source": "s", "type": "T", "time": "2026-11-23T10:00:00Z"}]}, 400),
        ("malformed body", "post", "/v1/events", {"data": "{", "headers": {"content-type": "application/json"}}, 400),
        ("empty body", "post", "/v1/events", {"data": "", "headers": {"content-type": "application/json"}}, 400),
        ("too deep", "post", "/v1/events", {"data": "[" * 65 + "]" * 65, "headers": {"content-type": "application/json"}}, 400),
        ("batch over 10,000", "post", "/v1/events",
         {"data": "[" + ",".join(["{}"] * 10_001) + "]", "headers": {"content-type": "application/cloudevents-batch+json"}}, 413),
        ("unsupported media", "post", "/v1/events", {"data": "a,b", "headers": {"content-type": "text/csv"}}, 415),
        ("unknown event", "get", "/v1/events/{id}", {}, 404),
        ("limit 0", "get", "/v1/events/{id}/descendants", {"params": {"limit": 0}}, 400),
        ("limit too big", "get", "/v1/correlations/{id}", {"params": {"limit": 100_001}}, 400),
        ("unknown correlation", "get", "/v1/correlations/{id}", {}, 404),
        ("unknown root", "get", "/v1/events/{id}/root", {}, 404),
        ("write", "post", "/v1/sql", {"json": {"query": "DELETE FROM events"}}, 400),
        ("bad sql", "post", "/v1/sql", {"json": {"query": "SELECT nope FROM event_lineage"}}, 400),
        ("not json", "post", "/v1/sql", {"data": "{", "headers": {"content-type": "application/json"}}, 400),
        ("plain text sql", "post", "/v1/sql", {"data": "SELECT 1 AS one", "headers": {"content-type": "text/plain"}}, 200),
    ],
)
def test_errors_and_alternatives_answer_as_documented(server, spec, name, method, path, kwargs, status):
    unique = str(uuid.uuid4())
    if "data" in kwargs:
        kwargs = {**kwargs, "data": kwargs["data"].replace("ID", unique)}
    if "json" in kwargs and path == "/v1/events":
        kwargs = {**kwargs, "json": [{**e, "id": unique} for e in kwargs["json"]]}
    url = server + path.replace("{id}", f"missing-{unique}")

    response = requests.request(method, url, timeout=10, **kwargs)

    assert response.status_code == status, f"{name}: {response.text[:500]}"
    check_documented(spec, path, method, response)
    if status >= 400:
        assert response.json()["error"]["message"], f"{name}: an error says what to do"


def test_wrong_method_is_a_json_error(server):
    response = requests.get(f"{server}/v1/events", timeout=10)
    assert response.status_code == 405
    assert response.json()["error"]["code"]


def test_non_integer_limit_is_a_json_error(server):
    response = requests.get(f"{server}/v1/dlq", params={"limit": "ten"}, timeout=10)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_parameter"


@pytest.fixture
def server_with_consumer(tmp_path):
    """A server whose consumer `notification-service` has a replay target (never contacted: the
    test only dry-runs)."""
    from conftest import BINARY, _pump, _wait_for_url
    import queue
    import signal
    import subprocess
    import threading

    config = tmp_path / "causeway.toml"
    config.write_text(
        f'listen = "127.0.0.1:0"\ndata = "{tmp_path / "data"}"\n'
        '[consumers.notification-service]\nreplay_url = "http://127.0.0.1:9/replay"\n'
    )
    stderr_path = tmp_path / "server.stderr"
    with open(stderr_path, "w") as stderr:
        proc = subprocess.Popen([str(BINARY), "serve", "--config", str(config)],
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr, text=True)
    lines = queue.Queue()
    threading.Thread(target=_pump, args=(proc.stdout, lines), daemon=True).start()
    try:
        yield _wait_for_url(proc, lines, stderr_path)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=15)


def test_a_dry_run_replay_shows_what_would_be_sent(server_with_consumer):
    """POST /v1/dlq/{id}/replay {"dry_run": true} answers, as documented, the target, headers and
    body a replay would send; the body is the reported event byte for byte."""
    server = server_with_consumer
    document = yaml.safe_load(requests.get(f"{server}/openapi.yaml", timeout=10).text)
    # Odd spacing: the body must be the event as reported, not a re-serialisation.
    event_text = '{"specversion":"1.0",  "id":"%s","source":"fulfilment-service","type":"ShipmentCreated",' \
                 '"time":"2026-11-23T10:00:06Z","correlationid":"c-1","data":{"orderId":"ord-1"}}' % uuid.uuid4()
    report = ('{"event": %s, "consumer": "notification-service", "error_type": "KeyError", '
              '"error_message": "customerEmail"}' % event_text)
    reported = requests.post(f"{server}/v1/dlq", data=report, headers={"content-type": "application/json"}, timeout=10)
    assert reported.status_code == 201, reported.text
    record = reported.json()["id"]

    response = requests.post(f"{server}/v1/dlq/{record}/replay", json={"dry_run": True}, timeout=10)

    assert response.status_code == 200, response.text
    check_documented(document, "/v1/dlq/{id}/replay", "post", response)
    request = response.json()["request"]
    assert (request["method"], request["url"]) == ("POST", "http://127.0.0.1:9/replay")
    assert request["headers"] == {"content-type": "application/cloudevents+json", "x-causeway-dlq-id": str(record)}
    assert (request["body"], request["body_encoding"]) == (event_text, "utf-8")
    assert request["body_bytes"] == len(event_text.encode())
    assert request["body_json"]["data"] == {"orderId": "ord-1"}
    # Nothing was sent: the record is still pending, its one attempt a dry run.
    shown = requests.get(f"{server}/v1/dlq/{record}", timeout=10).json()
    assert shown["record"]["status"] == "pending"
    assert [r["outcome"] for r in shown["replays"]] == ["dry_run"]

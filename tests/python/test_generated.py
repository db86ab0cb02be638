"""`causeway gen` output checked by the official validators, run on the real binary:

- every generated JSON Schema passes `check-jsonschema --check-metaschema`, and the CloudEvent
  schemas accept a realistic event and refuse broken ones (`check-jsonschema --schemafile`);
- the generated AsyncAPI document passes the official `@asyncapi/parser` (tests/asyncapi, installed
  by scripts/test with `npm ci`) with no error diagnostic;
- every `causeway sql` query in the generated runbooks runs, as written, against a real server.
"""

import copy
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import BINARY, REPO

MODEL = REPO / "examples" / "order-fulfillment" / "model.yaml"
CHECK_JSONSCHEMA = Path(sys.executable).parent / "check-jsonschema"
ASYNCAPI_DIR = REPO / "tests" / "asyncapi"
EVENT_COUNT = 7  # events in the example model
SCHEMA_FILES = 2 * (EVENT_COUNT + 1)  # payload + CloudEvent per version; PaymentProcessed has two


def gen(kind: str, out: Path) -> list[Path]:
    """Runs `causeway gen KIND` and returns the files it says it wrote (checking they exist)."""
    assert BINARY.is_file(), f"{BINARY} is missing: run `cargo build` first (scripts/test does)"
    result = subprocess.run(
        [str(BINARY), "gen", kind, "--model", str(MODEL), "--out", str(out)],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, f"causeway gen {kind} failed:\n{result.stdout}\n{result.stderr}"
    written = [Path(line) for line in result.stdout.splitlines() if line.strip()]
    assert written, f"causeway gen {kind} listed no files:\n{result.stderr}"
    for path in written:
        assert path.is_file(), f"{path} was listed but not written"
    on_disk = sorted(p for p in out.rglob("*") if p.is_file())
    assert sorted(written) == on_disk
    return written


def check_jsonschema(*args: str) -> subprocess.CompletedProcess:
    assert CHECK_JSONSCHEMA.is_file(), f"{CHECK_JSONSCHEMA} is missing: pip install -r tests/python/requirements.txt"
    return subprocess.run([str(CHECK_JSONSCHEMA), *args], capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def schemas(tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("json-schema")
    return {p.name: p for p in gen("json-schema", out)}


def test_every_generated_json_schema_passes_the_metaschema_check(schemas):
    assert len(schemas) == SCHEMA_FILES, sorted(schemas)
    assert "OrderCreated.v1.schema.json" in schemas
    assert "PaymentProcessed.v2.cloudevent.schema.json" in schemas
    result = check_jsonschema("--check-metaschema", *map(str, sorted(schemas.values())))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ok -- validation done" in result.stdout


# A PaymentProcessed v2 as payment-service would publish it (structured mode, every attribute set).
PAYMENT_PROCESSED = {
    "specversion": "1.0",
    "id": "9b2f6a0e-6c1d-4d0b-8f3e-2a7c5e1d4b90",
    "source": "payment-service",
    "type": "PaymentProcessed",
    "subject": "pay-7f3a",
    "time": "2026-11-23T10:15:00.512Z",
    "datacontenttype": "application/json",
    "correlationid": "corr-2c0d9e",
    "causationid": "4e1b0c7a-0f55-4a43-9d2e-6b1f8a3c2d10",
    "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    "tracestate": "rojo=00f067aa0ba902b7",
    "sequence": 2,
    "idempotencykey": "capture-ord-1042",
    "schemaversion": 2,
    "data": {"orderId": "ord-1042", "amount": 129.9, "currency": "EUR"},
}


def validate_event(schema: Path, event: dict, tmp_path: Path, name: str) -> subprocess.CompletedProcess:
    instance = tmp_path / f"{name}.json"
    instance.write_text(json.dumps(event))
    return check_jsonschema("--schemafile", str(schema), str(instance))


def test_a_realistic_cloudevent_and_its_payload_pass_the_generated_schemas(schemas, tmp_path):
    result = validate_event(schemas["PaymentProcessed.v2.cloudevent.schema.json"], PAYMENT_PROCESSED, tmp_path, "event")
    assert result.returncode == 0, result.stdout + result.stderr
    result = validate_event(schemas["PaymentProcessed.v2.schema.json"], PAYMENT_PROCESSED["data"], tmp_path, "payload")
    assert result.returncode == 0, result.stdout + result.stderr

    # A v1 event may leave schemaversion out (it means 1).
    v1 = copy.deepcopy(PAYMENT_PROCESSED)
    del v1["schemaversion"]
    v1["data"] = {"orderId": "ord-1042", "amount": 129.9}
    result = validate_event(schemas["PaymentProcessed.v1.cloudevent.schema.json"], v1, tmp_path, "v1")
    assert result.returncode == 0, result.stdout + result.stderr

    # OrderCreated is keyed by /orderId, so it needs no subject.
    order = {
        "specversion": "1.0", "id": "e-1", "source": "order-service", "type": "OrderCreated",
        "time": "2026-11-23T10:14:59Z", "correlationid": "corr-2c0d9e",
        "data": {"orderId": "ord-1042", "customerEmail": "a@example.com", "amount": 129.9, "currency": "EUR",
                 "lines": [{"sku": "SKU-1", "qty": 2}]},
    }
    result = validate_event(schemas["OrderCreated.v1.cloudevent.schema.json"], order, tmp_path, "order")
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    "change, complaint",
    [
        (lambda e: e.update(source="order-service"), "is not one of ['payment-service']"),
        (lambda e: e.update(type="PaymentFailed"), "'PaymentProcessed' was expected"),
        (lambda e: e.update(time="2026-11-23 10:15"), "is not a 'date-time'"),
        (lambda e: e.update(traceparent="00-4bf92f35-00f067aa0ba902b7-01"), "does not match"),
        (lambda e: e.update(schemaversion=1), "2 was expected"),
        (lambda e: e.pop("correlationid"), "'correlationid' is a required property"),
        (lambda e: e.pop("subject"), "'subject' is a required property"),
        (lambda e: e.update(correlationId="corr-2c0d9e"), "correlationId"),
        (lambda e: e["data"].pop("currency"), "'currency' is a required property"),
        (lambda e: e["data"].update(amount="129.90"), "is not of type 'number'"),
    ],
    ids=["foreign-source", "wrong-type", "bad-time", "bad-traceparent", "wrong-version", "no-correlation",
         "no-subject", "camelcase-attribute", "payload-field-missing", "payload-field-type"],
)
def test_a_broken_cloudevent_fails_the_generated_schema(schemas, tmp_path, change, complaint):
    event = copy.deepcopy(PAYMENT_PROCESSED)
    change(event)
    result = validate_event(schemas["PaymentProcessed.v2.cloudevent.schema.json"], event, tmp_path, "bad")
    assert result.returncode == 1, result.stdout + result.stderr
    assert complaint in result.stdout, result.stdout


def run_asyncapi_validator(document: Path) -> subprocess.CompletedProcess:
    if not (ASYNCAPI_DIR / "node_modules" / "@asyncapi" / "parser").is_dir():
        pytest.fail("the AsyncAPI parser is not installed: run `npm ci --prefix tests/asyncapi` (scripts/test does)")
    return subprocess.run(
        ["node", str(ASYNCAPI_DIR / "validate.mjs"), str(document)], capture_output=True, text=True, timeout=120
    )


def test_the_generated_asyncapi_document_passes_the_official_parser(tmp_path):
    [document] = gen("asyncapi", tmp_path)
    assert document.name == "asyncapi.json"
    result = run_asyncapi_validator(document)
    assert result.returncode == 0, result.stdout + result.stderr
    assert not [line for line in result.stdout.splitlines() if line.startswith("error:")], result.stdout
    assert "valid AsyncAPI 3.0.0, 5 channels" in result.stdout, result.stdout

    # The validator is not a rubber stamp: a message the channel does not carry is refused.
    spec = json.loads(document.read_text())
    spec["operations"]["order-service.send.OrderCreated"]["messages"] = [
        {"$ref": "#/channels/payments/messages/PaymentFailed"}
    ]
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps(spec))
    result = run_asyncapi_validator(broken)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "error: asyncapi3-operation-messages-from-referred-channel" in result.stdout


SQL_COMMAND = re.compile(r'^causeway sql ".*"$')


def test_every_runbook_query_runs_against_a_real_server(server, tmp_path):
    files = gen("runbooks", tmp_path / "runbooks")
    assert tmp_path / "runbooks" / "README.md" in files
    commands = []
    for path in files:
        for line in path.read_text().splitlines():
            if SQL_COMMAND.match(line):
                commands.append((path.name, line))
    assert len(commands) >= 30, commands
    env = {**os.environ, "CAUSEWAY_SERVER": server}
    for name, command in commands:
        # As an engineer would paste it: a shell command line naming the binary.
        argv = shlex.split(command)
        result = subprocess.run([str(BINARY), *argv[1:]], capture_output=True, text=True, timeout=30, env=env)
        assert result.returncode == 0, f"{name}: {command}\n{result.stdout}\n{result.stderr}"


def test_gen_refuses_a_model_with_errors_and_writes_nothing(tmp_path):
    model = tmp_path / "broken.yaml"
    model.write_text("name: broken\nevents:\n  ThingHappened: {context: nowhere}\n")
    out = tmp_path / "out"
    result = subprocess.run(
        [str(BINARY), "gen", "json-schema", "--model", str(model), "--out", str(out)],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 1
    assert f"{model}:3:" in result.stderr and "error:" in result.stderr and "nowhere" in result.stderr, result.stderr
    assert not out.exists()

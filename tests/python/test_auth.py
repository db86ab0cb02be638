"""docs/openapi.yaml against a real `causeway serve --auth required`: who may call each operation.

Each operation's `x-causeway-roles` (or `security: []` for the public ones) is what the document
promises; the server's own table (`ROUTES` in crates/server/src/auth.rs) is what it does. Every
operation is called with no token, a refused token and a real token of each role, and must answer
as the document says: `401` (or, for a page, `303` to the sign-in page) without a token, `403` for a
role not listed, anything but `401`/`403` for a role listed — each answer a status the operation
documents, with its documented content type and body. So the document cannot drift from the table.
The sign-in cookie and its CSRF token, a reader's view of a dead letter, a producer's refused
contexts and a token's rate are checked against the document the same way.
"""

import re
import subprocess
import uuid
from pathlib import Path

import pytest
import requests
import yaml

from conftest import BINARY, REPO, serving
from test_openapi import check_documented

DOCUMENT = yaml.safe_load((REPO / "docs" / "openapi.yaml").read_text())
METHODS = ("get", "put", "post", "delete", "patch")
ROLES = ("reader", "producer", "operator", "admin")
OPERATIONS = [(method, path) for path, item in DOCUMENT["paths"].items() for method in item if method in METHODS]
MODEL = REPO / "examples" / "order-fulfillment" / "model.yaml"
# A token no server made: shaped like one, so it is refused as unknown.
UNKNOWN_TOKEN = "cw_0000000000_" + "A" * 43


def make_token(data: Path, role: str, *contexts: str) -> str:
    """A token of ROLE made with `causeway token create` on DATA (no server needed)."""
    args = [str(BINARY), "token", "create", "--role", role, "--data", str(data)]
    for context in contexts:
        args += ["--context", context]
    made = subprocess.run(args, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    assert made.returncode == 0, f"causeway token create --role {role}: {made.stderr}"
    return made.stdout.strip()


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory):
    """A server with auth required and the example model: its URL and a token of each role (the
    producer holds every context)."""
    assert BINARY.is_file(), f"{BINARY} is missing: run `cargo build` first (scripts/test does)"
    tmp = tmp_path_factory.mktemp("auth")
    data = tmp / "data"
    tokens = {role: make_token(data, role, *(["*"] if role == "producer" else [])) for role in ROLES}
    with serving(tmp, data, "--auth", "required", "--model", str(MODEL)) as url:
        yield url, tokens


@pytest.fixture(scope="module")
def served(auth_server):
    """The document as the server serves it (the one this module reads, compiled in)."""
    url, _ = auth_server
    response = requests.get(f"{url}/openapi.yaml", timeout=10)
    assert response.status_code == 200
    document = yaml.safe_load(response.text)
    assert document == DOCUMENT, "the server serves another docs/openapi.yaml than the tree's: rebuild it (cargo build)"
    return document


def is_page(method: str, path: str) -> bool:
    """A web UI page: without a token the browser is sent to sign in instead of a 401."""
    return method == "get" and not path.startswith("/v1/") and path != "/metrics"


def call(url: str, method: str, path: str, headers: dict, tokens: dict) -> requests.Response:
    """One request to the operation, with a body its handler can read when the role may call it.
    Nothing it does changes what another call sees: ids name nothing, writes are refused or dry
    runs, and no token is made or revoked."""
    target = url + re.sub(r"\{\w+\}", "1", path)
    kwargs: dict = {"json": {}}
    if (method, path) == ("post", "/v1/sql"):
        kwargs = {"json": {"query": "SELECT 1"}}
    elif (method, path) == ("post", "/v1/dlq/replay"):
        kwargs = {"json": {"dry_run": True, "limit": 1}}
    elif (method, path) == ("post", "/sign-in"):
        kwargs = {"data": {"token": tokens["reader"], "next": "/journeys"}}
    elif method == "get" or (method, path) in {("post", "/sign-out"), ("post", "/v1/model/reload")}:
        kwargs = {}
    return requests.request(method, target, headers=headers, timeout=30, allow_redirects=False, **kwargs)


def test_every_operation_says_who_may_call_it():
    for method, path in OPERATIONS:
        operation = DOCUMENT["paths"][path][method]
        label = f"{method.upper()} {path}"
        if operation.get("security") == []:
            assert "x-causeway-roles" not in operation, f"{label} is public and names roles"
            continue
        assert "security" not in operation, f"{label}: the document's top-level security applies"
        roles = operation.get("x-causeway-roles")
        assert roles and set(roles) <= set(ROLES) and len(set(roles)) == len(roles), f"{label}: x-causeway-roles {roles}"
        responses = operation["responses"]
        for status, component in [("401", "Unauthorized"), ("429", "RateLimited")]:
            assert responses.get(status, {}).get("$ref") == f"#/components/responses/{component}", f"{label} {status}"
        if is_page(method, path):
            # /search answers 303 of its own too, and says both.
            redirect = responses.get("303", {})
            assert redirect.get("$ref") == "#/components/responses/SignIn" or "/sign-in" in redirect.get("description", ""), label
        assert responses["403"]["$ref"] in ("#/components/responses/Forbidden", "#/components/responses/IngestForbidden"), label
    schemes = DOCUMENT["components"]["securitySchemes"]
    assert DOCUMENT["security"] == [{name: []} for name in schemes]
    assert schemes["bearer"]["scheme"] == "bearer" and schemes["signInCookie"] == {**schemes["signInCookie"], "in": "cookie", "name": "causeway_token"}


@pytest.mark.parametrize("method, path", OPERATIONS, ids=[f"{m.upper()} {p}" for m, p in OPERATIONS])
def test_each_role_is_answered_as_the_document_says(auth_server, served, method, path):
    url, tokens = auth_server
    operation = served["paths"][path][method]
    public = operation.get("security") == []
    allowed = set(ROLES) if public else set(operation["x-causeway-roles"])

    anonymous = call(url, method, path, {}, tokens)
    check_documented(served, path, method, anonymous)
    if public:
        assert anonymous.status_code not in (401, 403), anonymous.text[:300]
        assert not anonymous.headers.get("location", "").startswith("/sign-in?next="), "a public operation sent to sign in"
    elif is_page(method, path):
        assert anonymous.status_code == 303, anonymous.text[:300]
        assert anonymous.headers["location"] == "/sign-in?next=" + requests.utils.quote(re.sub(r"\{\w+\}", "1", path), safe="")
    else:
        assert anonymous.status_code == 401, anonymous.text[:300]
        assert anonymous.headers["www-authenticate"].startswith("Bearer realm=\"causeway\"")
        assert anonymous.json()["error"]["code"] == "unauthorized"

    refused = call(url, method, path, {"Authorization": f"Bearer {UNKNOWN_TOKEN}"}, tokens)
    check_documented(served, path, method, refused)
    if not public:
        assert refused.status_code == 401 and refused.json()["error"]["code"] == "unauthorized", refused.text[:300]
    elif (method, path) != ("post", "/sign-in"):
        # A public operation answers whatever credentials come along (sign-in judges the form's).
        assert refused.status_code not in (401, 403), refused.text[:300]

    for role in ROLES:
        response = call(url, method, path, {"Authorization": f"Bearer {tokens[role]}"}, tokens)
        check_documented(served, path, method, response)
        if role in allowed:
            assert response.status_code not in (401, 403), f"{role}: {response.status_code} {response.text[:300]}"
        else:
            assert response.status_code == 403, f"{role}: {response.status_code} {response.text[:300]}"
            assert response.json()["error"]["code"] == "forbidden", response.text[:300]


def test_the_sign_in_cookie_and_its_csrf_token_are_as_documented(auth_server, served):
    url, tokens = auth_server
    signed_in = requests.post(f"{url}/sign-in", data={"token": tokens["operator"], "next": "/dlq"}, timeout=10, allow_redirects=False)
    check_documented(served, "/sign-in", "post", signed_in)
    assert (signed_in.status_code, signed_in.headers["location"]) == (303, "/dlq")
    set_cookies = signed_in.raw.headers.getlist("set-cookie")
    token_cookie = next(c for c in set_cookies if c.startswith("causeway_token="))
    assert "HttpOnly" in token_cookie and "SameSite=Strict" in token_cookie
    csrf = signed_in.cookies["causeway_csrf"]
    cookies = {"causeway_token": signed_in.cookies["causeway_token"]}

    page = requests.get(f"{url}/dlq", cookies=cookies, timeout=10, allow_redirects=False)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    body = {"matchers": {"slo": "checkout"}, "duration": "1h", "comment": "checked by the auth test"}
    # A write with the cookie and no CSRF token: refused as documented.
    forged = requests.post(f"{url}/v1/silences", json=body, cookies=cookies, timeout=10)
    check_documented(served, "/v1/silences", "post", forged)
    assert (forged.status_code, forged.json()["error"]["code"]) == (403, "csrf")
    made = requests.post(f"{url}/v1/silences", json=body, cookies=cookies, headers={"x-csrf-token": csrf}, timeout=10)
    check_documented(served, "/v1/silences", "post", made)
    assert made.status_code == 201, made.text
    # A write with a bearer token needs none.
    expired = requests.delete(f"{url}/v1/silences/{made.json()['id']}", headers={"Authorization": f"Bearer {tokens['operator']}"}, timeout=10)
    assert expired.status_code == 200, expired.text

    refused = requests.post(f"{url}/sign-in", data={"token": UNKNOWN_TOKEN}, timeout=10, allow_redirects=False)
    check_documented(served, "/sign-in", "post", refused)
    assert refused.status_code == 401 and "causeway_token" not in refused.cookies
    signed_out = requests.post(f"{url}/sign-out", timeout=10, allow_redirects=False)
    check_documented(served, "/sign-out", "post", signed_out)
    assert (signed_out.status_code, signed_out.headers["location"]) == (303, "/sign-in")
    assert any(c.startswith("causeway_token=;") and "Max-Age=0" in c for c in signed_out.raw.headers.getlist("set-cookie"))


def test_a_dead_letter_shows_what_it_carried_to_the_operator_role_only(auth_server, served):
    url, tokens = auth_server
    event = {"specversion": "1.0", "id": str(uuid.uuid4()), "source": "order-service", "type": "OrderCreated",
             "time": "2026-11-23T10:00:00Z", "correlationid": str(uuid.uuid4()), "data": {"orderId": "ord-1"}}
    report = {"event": event, "consumer": "notification-service", "error_type": "KeyError", "error_message": "'customerEmail'"}
    reported = requests.post(f"{url}/v1/dlq", json=report, headers={"Authorization": f"Bearer {tokens['producer']}"}, timeout=10)
    check_documented(served, "/v1/dlq", "post", reported)
    assert reported.status_code == 201, reported.text
    record = reported.json()["id"]

    def read(role: str) -> dict:
        response = requests.get(f"{url}/v1/dlq/{record}", headers={"Authorization": f"Bearer {tokens[role]}"}, timeout=10)
        check_documented(served, "/v1/dlq/{id}", "get", response)
        assert response.status_code == 200, response.text
        return response.json()["record"]

    hidden = read("reader")
    assert "original_event" not in hidden and hidden["payload"].startswith("hidden")
    for role in ("operator", "admin"):
        shown = read(role)
        assert shown["original_event"]["id"] == event["id"] and "payload" not in shown


def test_a_producer_refused_every_event_is_answered_as_documented(auth_server, served):
    url, tokens = auth_server
    admin = {"Authorization": f"Bearer {tokens['admin']}"}
    # A producer of the example model's `payments` context; OrderCancelled is `ordering`'s.
    made = requests.post(f"{url}/v1/tokens", json={"role": "producer", "contexts": ["payments"], "name": "payment-service"}, headers=admin, timeout=10)
    check_documented(served, "/v1/tokens", "post", made)
    assert made.status_code == 201, made.text
    event = {"specversion": "1.0", "id": str(uuid.uuid4()), "source": "order-service", "type": "OrderCancelled",
             "time": "2026-11-23T10:00:00Z", "correlationid": str(uuid.uuid4()), "data": {"orderId": "ord-1", "reason": "test"}}
    response = requests.post(f"{url}/v1/events", json=[event], headers={"Authorization": f"Bearer {made.json()['token']}"}, timeout=10)
    check_documented(served, "/v1/events", "post", response)
    assert response.status_code == 403, response.text
    body = response.json()
    assert body["error"]["code"] == "unauthorized_producer" and body["results"][0]["error_type"] == "unauthorized_producer"

    revoked = requests.delete(f"{url}/v1/tokens/{made.json()['id']}", headers=admin, timeout=10)
    check_documented(served, "/v1/tokens/{id}", "delete", revoked)
    assert revoked.status_code == 200 and revoked.json()["revoked_at"]
    listed = requests.get(f"{url}/v1/tokens", headers=admin, timeout=10)
    check_documented(served, "/v1/tokens", "get", listed)
    audit = requests.get(f"{url}/v1/audit", params={"limit": 10_000}, headers=admin, timeout=10)
    check_documented(served, "/v1/audit", "get", audit)
    assert "causeway.audit.token.revoke" in [e["type"] for e in audit.json()["entries"]]


def test_a_token_over_its_rate_is_answered_as_documented(tmp_path):
    data = tmp_path / "data"
    token = make_token(data, "reader")
    config = tmp_path / "causeway.toml"
    # A bucket holds a second's units, and at least one: one request, then none for an hour.
    config.write_text('[auth]\nrates = { reader = "1/h" }\n')
    with serving(tmp_path, data, "--auth", "required", "--config", str(config)) as url:
        headers = {"Authorization": f"Bearer {token}"}
        answers = [requests.get(f"{url}/v1/dlq/summary", headers=headers, timeout=10) for _ in range(2)]
        document = yaml.safe_load(requests.get(f"{url}/openapi.yaml", timeout=10).text)
    assert [a.status_code for a in answers] == [200, 429], [a.text for a in answers]
    check_documented(document, "/v1/dlq/summary", "get", answers[1])
    assert answers[1].json()["error"]["code"] == "rate_limited" and int(answers[1].headers["retry-after"]) > 3000

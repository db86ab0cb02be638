"""The attack run: schemathesis against the OpenAPI document a server serves, every check on, with
auth required and a real token of each role.

A server holding demo data (a few seconds of `causeway demo`: events, findings, dead letters of both
kinds) serves its document with `--auth required`; schemathesis generates requests for the
operations from it — valid ones, invalid ones, boundary values — and checks every answer: no 5xx,
every status, content type, header and body as the document says, schema-valid requests accepted
and invalid ones refused (tests/python/schemathesis.toml says where a valid request may still be
refused, and why), and, for every operation that needs a token, that it is refused without one and
with a bad one (`ignored_auth`). Any failure fails the test with schemathesis' report, which shows
how to reproduce each finding.

One run per role, each sending `Authorization: Bearer <token>` of its role (the producer's holds
every context, `*`), each over operations that role may call (`x-causeway-roles` in the document):
sending a role what it may not call only meets the `403` of one middleware that reads neither the
parameters nor the body, so fuzzing it finds nothing; test_auth.py checks that refusal, per role
and operation, against the document instead. So each operation is attacked once, by a role that may
call it:

- producer: ingest and dead-letter reports;
- operator: DLQ actions, originals, silences, model reload;
- admin: tokens and the audit log;
- reader: the public operations (health, the document, the UI's assets, sign-in);
- the reads, which answer every reading role alike, are dealt out in turn to the reader, the
  operator and the admin, in document order — except the four whose answer depends on the role
  (`ROLE_DEPENDENT`: what a dead letter carried, the actions a page offers), which the reader and
  the operator each attack.

The four runs go at once, one schemathesis worker each: as busy as two workers on two cores, and
no two threads of one Python generating at once (see `start_attack`). Each operation is attacked
about as hard as by the one auth-off run before auth came: `MAX_EXAMPLES` cases per operation and
phase, 80 where that run had 100, as declaring security adds cases of its own to every operation
and there are more operations (a fixed seed so a run is reproducible; `ATTACK_MAX_EXAMPLES` and
`ATTACK_SEED` change them). The whole takes about what that run took: measured back to back on the
two-core machine while other builds ran, the auth-off run took 145 to 168 s, these four runs 219 s
at 100 cases and 165 s at 80 (the auth-off run took 95 s on a quiet machine).

The auth-off run is gone: with auth off every request acts as a principal holding every role,
which the handlers also see from the operator and admin tokens; and a server without auth cannot
enforce the security the document declares (`ignored_auth` would fail every operation).
test_openapi.py still calls every operation with auth off.
"""

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
import yaml

from conftest import BINARY, serving

HERE = Path(__file__).resolve().parent
SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"
MAX_EXAMPLES = int(os.environ.get("ATTACK_MAX_EXAMPLES", "80"))
SEED = int(os.environ.get("ATTACK_SEED", "4"))
DEMO_SECONDS = 6
RUN_TIMEOUT = 600
METHODS = ("get", "put", "post", "delete", "patch")
ROLES = ("reader", "producer", "operator", "admin")
# Reads whose answer depends on whether the token holds the operator role: a dead letter's payload
# (crates/server/src/api/dlq.rs `hide_payload`, the SQL scope of `dlq_events.original_event`) and
# the actions a page offers (`Viewer::may_act` in pages.rs).
ROLE_DEPENDENT = {"GET /v1/dlq/{id}", "POST /v1/sql", "GET /dlq/{id}", "GET /canvas"}


def make_token(data: Path, role: str) -> str:
    """A token of ROLE made on DATA's token file with `causeway token create` (no server needed)."""
    extra = ["--context", "*"] if role == "producer" else []
    made = subprocess.run(
        [str(BINARY), "token", "create", "--role", role, "--name", f"attack-{role}", "--data", str(data), *extra],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60,
    )
    assert made.returncode == 0, f"causeway token create --role {role} exited with {made.returncode}: {made.stderr}"
    token = made.stdout.strip()
    assert re.fullmatch(r"cw_[0-9a-f]{10}_[A-Za-z0-9_-]{43}", token), made.stdout
    return token


@pytest.fixture
def demo_server(tmp_path):
    """A server with auth required on the store a short seeded demo left, with the demo's model:
    its base URL and a token of each role."""
    assert BINARY.is_file(), f"{BINARY} is missing: run `cargo build` first (scripts/test does)"
    data = tmp_path / "data"
    demo = subprocess.run(
        [str(BINARY), "demo", "--data", str(data), "--duration", f"{DEMO_SECONDS}s", "--listen", "127.0.0.1:0", "--seed", "1"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=120,
    )
    assert demo.returncode == 0, f"causeway demo exited with {demo.returncode}: {demo.stderr}"
    tokens = {role: make_token(data, role) for role in ROLES}
    with serving(tmp_path, data, "--model", str(data / "model" / "model.yaml"), "--auth", "required") as url:
        yield url, tokens


def operation_names(document: dict) -> list[tuple[str, dict]]:
    """Every operation as schemathesis names it (`GET /v1/dlq/{id}`), in document order."""
    return [
        (f"{method.upper()} {path}", operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in METHODS
    ]


def attack_plan(document: dict) -> dict[str, list[str]]:
    """Which role attacks which operations (see the module's docstring)."""
    plan: dict[str, list[str]] = {role: [] for role in ROLES}
    readers = ("reader", "operator", "admin")
    turn = 0
    for name, operation in operation_names(document):
        if operation.get("security") == []:
            plan["reader"].append(name)
            continue
        roles = operation["x-causeway-roles"]
        if "reader" in roles:
            if name in ROLE_DEPENDENT:
                plan["reader"].append(name)
                plan["operator"].append(name)
            else:
                plan[readers[turn % len(readers)]].append(name)
                turn += 1
        else:
            # Ingest, operate or admin: the least role that may call it.
            plan[next(role for role in ROLES if role in roles)].append(name)
    return plan


def start_attack(url: str, role: str, token: str, names: list[str], tmp_path: Path) -> tuple[subprocess.Popen, Path]:
    """Starts schemathesis over NAMES with ROLE's token: the process and the file of its report."""
    command = [
        str(SCHEMATHESIS), "run", f"{url}/openapi.yaml",
        "--checks", "all",
        "--max-examples", str(MAX_EXAMPLES),
        "--seed", str(SEED),
        # One worker per run, the four runs at once: as busy as two workers in turn, and no two
        # threads of one interpreter generating at once. Hypothesis describes a strategy with
        # `ast.parse`, whose recursion count CPython 3.11 shares between an interpreter's threads
        # (cpython gh-106905): two workers once stopped a run with "SystemError: AST constructor
        # recursion depth mismatch".
        "--workers", "1",
        "--request-timeout", "15",
        "--no-color",
        "--header", f"Authorization: Bearer {token}",
    ]
    for name in names:
        command += ["--include-name", name]
    # From this directory: schemathesis.toml and its hooks are read from here. Hypothesis keeps its
    # caches in the test's own directory, so a run leaves nothing in the tree.
    env = {**os.environ, "HYPOTHESIS_STORAGE_DIRECTORY": str(tmp_path / f"hypothesis-{role}")}
    report = tmp_path / f"schemathesis-{role}.txt"
    with open(report, "w") as out:
        process = subprocess.Popen(command, cwd=HERE, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, text=True)
    return process, report


def test_schemathesis_finds_nothing_against_the_served_document(demo_server, tmp_path):
    url, tokens = demo_server
    reader = {"Authorization": f"Bearer {tokens['reader']}"}
    # The data is there: the run reaches records, findings and journeys, not only 404s.
    summary = requests.get(f"{url}/v1/dlq/summary", headers=reader, timeout=10).json()
    assert summary["pending"] > 0, summary
    assert requests.get(f"{url}/v1/journeys/summary", headers=reader, timeout=10).json()["journeys_by_state"], "no journeys"
    # Auth is on: without a token, the same read is refused.
    assert requests.get(f"{url}/v1/dlq/summary", timeout=10).status_code == 401

    assert SCHEMATHESIS.is_file(), f"{SCHEMATHESIS} is missing: install tests/python/requirements.txt"
    document = yaml.safe_load(requests.get(f"{url}/openapi.yaml", timeout=10).text)
    plan = attack_plan(document)
    every = {name for name, _ in operation_names(document)}
    # Every operation of the document is attacked, the web UI's pages and the token endpoints included.
    assert set().union(*map(set, plan.values())) == every and len(every) >= 59, sorted(every)

    started = time.monotonic()
    runs = {role: start_attack(url, role, tokens[role], plan[role], tmp_path) for role in ROLES}
    try:
        for process, _ in runs.values():
            process.wait(timeout=max(1.0, RUN_TIMEOUT - (time.monotonic() - started)))
    finally:
        for process, _ in runs.values():
            if process.poll() is None:
                process.kill()
                process.wait()
    for role, (process, path) in runs.items():
        report = path.read_text()
        assert process.returncode == 0, f"schemathesis found failures with the {role} token (exit {process.returncode}):\n{report[-20000:]}"
        selected = re.search(r"Operations:\s+(\d+) selected / (\d+) total", report)
        assert selected and int(selected.group(1)) == len(plan[role]), f"{role}: {plan[role]}\n{report[-5000:]}"
        summary = report.split("SUMMARY")[-1]
        cases = re.search(r"Test cases:\s+(\d+) generated, (\d+) passed", summary)
        assert cases and int(cases.group(2)) > 0 and "Failures:" not in summary and "unique failure" not in summary, report[-5000:]
        took = re.search(r" in ([\d.]+)s =+$", report.rstrip())
        print(f"attack run, {role}: {len(plan[role])} operations, {cases.group(1)} cases, {took.group(1) if took else '?'} s")
    print(f"attack run: {time.monotonic() - started:.1f} s in all")

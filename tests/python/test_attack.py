"""The attack run: schemathesis against the OpenAPI document a server serves, every check on.

A server holding demo data (a few seconds of `causeway demo`: events, findings, dead letters of both
kinds) serves its document; schemathesis generates requests for every operation from it — valid
ones, invalid ones, boundary values — and checks every answer: no 5xx, every status, content type,
header and body as the document says, schema-valid requests accepted and invalid ones refused
(tests/python/schemathesis.toml says where a valid request may still be refused, and why). Any
failure fails the test with schemathesis' report, which shows how to reproduce each finding.

Bounded to about a minute and a half on two cores (`MAX_EXAMPLES` cases per operation and phase,
a fixed seed so a run is reproducible); `ATTACK_MAX_EXAMPLES` and `ATTACK_SEED` change them.
docs/operations.md#attack-run has a longer run and its figures.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from conftest import BINARY, serving

HERE = Path(__file__).resolve().parent
SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"
MAX_EXAMPLES = int(os.environ.get("ATTACK_MAX_EXAMPLES", "100"))
SEED = int(os.environ.get("ATTACK_SEED", "4"))
DEMO_SECONDS = 6
RUN_TIMEOUT = 600


@pytest.fixture
def demo_server(tmp_path):
    """A server on the store a short seeded demo left, with the demo's model: its base URL."""
    assert BINARY.is_file(), f"{BINARY} is missing: run `cargo build` first (scripts/test does)"
    data = tmp_path / "data"
    demo = subprocess.run(
        [str(BINARY), "demo", "--data", str(data), "--duration", f"{DEMO_SECONDS}s", "--listen", "127.0.0.1:0", "--seed", "1"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=120,
    )
    assert demo.returncode == 0, f"causeway demo exited with {demo.returncode}: {demo.stderr}"
    with serving(tmp_path, data, "--model", str(data / "model" / "model.yaml")) as url:
        yield url


def test_schemathesis_finds_nothing_against_the_served_document(demo_server, tmp_path):
    # The data is there: the run reaches records, findings and journeys, not only 404s.
    summary = requests.get(f"{demo_server}/v1/dlq/summary", timeout=10).json()
    assert summary["pending"] > 0, summary
    assert requests.get(f"{demo_server}/v1/journeys/summary", timeout=10).json()["journeys_by_state"], "no journeys"

    assert SCHEMATHESIS.is_file(), f"{SCHEMATHESIS} is missing: install tests/python/requirements.txt"
    command = [
        str(SCHEMATHESIS), "run", f"{demo_server}/openapi.yaml",
        "--checks", "all",
        "--max-examples", str(MAX_EXAMPLES),
        "--seed", str(SEED),
        "--workers", "2",
        "--request-timeout", "15",
        "--no-color",
    ]
    # From this directory: schemathesis.toml and its hooks are read from here. Hypothesis keeps its
    # caches in the test's own directory, so a run leaves nothing in the tree.
    env = {**os.environ, "HYPOTHESIS_STORAGE_DIRECTORY": str(tmp_path / "hypothesis")}
    run = subprocess.run(command, cwd=HERE, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=RUN_TIMEOUT)
    report = run.stdout + run.stderr
    assert run.returncode == 0, f"schemathesis found failures (exit {run.returncode}):\n{report[-20000:]}"
    assert "30 selected / 30 total" in report, report[-5000:]
    assert " passed" in report and "failed" not in report.split("SUMMARY")[-1], report[-5000:]

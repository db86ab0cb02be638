"""Fixtures for the end-to-end tests: a real `causeway serve` on a free port with its own data dir.

The binary is `target/debug/causeway` (built by scripts/test); CAUSEWAY_BIN overrides the path.
"""

import contextlib
import os
import queue
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
import requests

REPO = Path(__file__).resolve().parents[2]
BINARY = Path(os.environ.get("CAUSEWAY_BIN", REPO / "target" / "debug" / "causeway"))
CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
CHROMEDRIVER = Path(os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver"))
READY_LINE = re.compile(r"^causeway listening on (http://\S+)$")
START_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0


def _pump(stream, lines: "queue.Queue[str | None]") -> None:
    """Forwards the server's stdout lines; None marks end of output (the process exited)."""
    for line in stream:
        lines.put(line.rstrip("\n"))
    lines.put(None)


def _wait_for_url(proc: subprocess.Popen, lines: "queue.Queue[str | None]", stderr_path: Path) -> str:
    deadline = time.monotonic() + START_TIMEOUT
    seen = []
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        try:
            line = lines.get(timeout=remaining)
        except queue.Empty:
            break
        if line is None:
            proc.wait()
            pytest.fail(
                f"causeway exited with {proc.returncode} before listening\n"
                f"stdout: {seen}\nstderr: {stderr_path.read_text()}"
            )
        seen.append(line)
        match = READY_LINE.match(line)
        if match:
            return match.group(1)
    proc.kill()
    proc.wait()
    pytest.fail(f"causeway did not print its address within {START_TIMEOUT}s\nstdout: {seen}\nstderr: {stderr_path.read_text()}")


@contextlib.contextmanager
def serving(tmp_path: Path, data: Path, *extra: str):
    """A `causeway serve` on DATA (with EXTRA flags) on a free port: its base URL while the block
    runs; stopped with SIGTERM afterwards, and it must exit 0."""
    assert BINARY.is_file(), f"{BINARY} is missing: run `cargo build` first (scripts/test does)"
    stderr_path = tmp_path / "server.stderr"
    with open(stderr_path, "w") as stderr:
        proc = subprocess.Popen(
            [str(BINARY), "serve", "--data", str(data), "--listen", "127.0.0.1:0", *extra],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
    lines: "queue.Queue[str | None]" = queue.Queue()
    threading.Thread(target=_pump, args=(proc.stdout, lines), daemon=True).start()
    try:
        yield _wait_for_url(proc, lines, stderr_path)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                pytest.fail(f"causeway did not stop within {STOP_TIMEOUT}s of SIGTERM")
    # A graceful shutdown exits 0; anything else is a crash worth seeing.
    assert proc.returncode == 0, f"causeway exited with {proc.returncode}\nstderr: {stderr_path.read_text()}"


@pytest.fixture
def server(tmp_path):
    """Base URL (`http://127.0.0.1:PORT`) of a fresh server; stopped with SIGTERM afterwards."""
    with serving(tmp_path, tmp_path / "data") as url:
        yield url


@pytest.fixture
def sql(server):
    """Runs one query through `POST /v1/sql` and returns the answer (asserting it is a 200)."""

    def run(query: str) -> dict:
        response = requests.post(f"{server}/v1/sql", json={"query": query}, timeout=10)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["truncated"] is False
        assert all(len(row) == len(body["columns"]) for row in body["rows"])
        return body

    return run


def chromium(directory: Path, width: int, height: int):
    """A real headless Chromium (Debian's, installed by scripts/test) driven through chromedriver,
    with a fresh profile and chromedriver's log in DIRECTORY, and the browser's console kept for
    `get_log("browser")`. The caller quits it."""
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    for path in (CHROMIUM, CHROMEDRIVER):
        assert path.is_file(), f"{path} is missing: scripts/test installs Debian's chromium and chromium-driver"
    options = Options()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        f"--window-size={width},{height}",
        f"--user-data-dir={directory / 'chromium-profile'}",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(executable_path=str(CHROMEDRIVER), log_output=str(directory / "chromedriver.log"))
    return webdriver.Chrome(service=service, options=options)

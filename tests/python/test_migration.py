"""A store written by the previous layout (version 3) opens with this binary: the migration keeps
every dead letter and builds the summary's tallies, flow and text index from them."""

import re
import sqlite3

import pytest
import requests

from conftest import REPO


def schema_sql(version: int) -> str:
    """The layout's SQL as the binary applies it, read from the Rust source."""
    source = (REPO / "crates" / "store" / "src" / "schema.rs").read_text()
    match = re.search(rf'const SCHEMA_V{version}: &str = r#"(.*?)"#;', source, re.S)
    assert match, f"SCHEMA_V{version} not found in schema.rs"
    return match.group(1)


@pytest.fixture
def v3_store(tmp_path):
    """tmp_path/data as version 3 left it, with refused inputs in the DLQ (the `server` fixture
    then starts on it)."""
    data = tmp_path / "data"
    data.mkdir()
    db = sqlite3.connect(data / "causeway.db")
    for version in (1, 2, 3):
        db.executescript(schema_sql(version) + f"\nPRAGMA user_version = {version};")
    rows = [
        (f"e{i}", "malformed_json" if i < 3 else "missing_correlation", f"the body is not valid JSON at byte {i}")
        for i in range(5)
    ]
    db.executemany(
        "INSERT INTO dlq (event_id, consumer, error_type, error_message, failed_at, last_failed_at, original_event)"
        " VALUES (?, 'causeway', ?, ?, '2026-11-30T10:00:00.000000Z', '2026-11-30T10:00:00.000000Z', '{bad')",
        rows,
    )
    db.commit()
    db.close()
    return data


def test_a_version_3_store_migrates_with_its_dead_letters(v3_store, server):
    summary = requests.get(f"{server}/v1/dlq/summary", timeout=10).json()
    assert summary["pending"] == 5
    assert summary["by_error_type"] == {"malformed_json": 3, "missing_correlation": 2}
    assert summary["by_consumer"] == {"causeway": 5}
    assert summary["oldest_pending"]["failed_at"] == "2026-11-30T10:00:00.000000Z"
    found = requests.get(f"{server}/v1/dlq", params={"q": "at byte 3"}, timeout=10).json()["records"]
    assert [r["event_id"] for r in found] == ["e3"], "the text index covers migrated records"
    record = requests.get(f"{server}/v1/dlq/{found[0]['id']}", timeout=10).json()["record"]
    assert record["original_event"] == "{bad" and record["status"] == "pending"
    discarded = requests.post(f"{server}/v1/dlq/{found[0]['id']}/discard", json={"reason": "old"}, timeout=10)
    assert discarded.status_code == 200, discarded.text
    after = requests.get(f"{server}/v1/dlq/summary", timeout=10).json()
    assert after["pending"] == 4 and after["by_status"] == {"pending": 4, "discarded": 1}
    assert after["by_error_type"] == {"malformed_json": 3, "missing_correlation": 1}

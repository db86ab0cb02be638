"""The event-storming canvas as a person sees it: `causeway model render` writes the example model's
page, a real headless Chromium (Debian's `chromium` and `chromium-driver`, installed by scripts/test)
opens it, and the notes' on-screen rectangles are measured: every event of the model appears exactly
once, no two notes overlap, every line of text stays inside its note, and the page loads nothing from
outside. A screenshot is left in the test's temporary directory.
"""

import os
import subprocess
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

import pytest
import yaml

from conftest import chromium

REPO = Path(__file__).resolve().parents[2]
BINARY = Path(os.environ.get("CAUSEWAY_BIN", REPO / "target" / "debug" / "causeway"))
MODEL = REPO / "examples" / "order-fulfillment" / "model.yaml"

# Every `.note` with its rectangle, its sticky's rectangle and the rectangles of its text lines.
MEASURE_NOTES = """
const box = (e) => { const r = e.getBoundingClientRect();
                     return {left: r.left, top: r.top, right: r.right, bottom: r.bottom}; };
return Array.from(document.querySelectorAll('.note')).map((n) => ({
  id: n.id, kind: n.dataset.kind, name: n.dataset.name, box: box(n),
  sticky: box(n.querySelector('rect.sticky')),
  lines: Array.from(n.querySelectorAll('text tspan, text:not(:has(tspan))'))
              .map((t) => ({text: t.textContent, box: box(t)})),
}));
"""


def model_event_names(path: Path) -> list[str]:
    """The event names of a model file and the files it includes, read with PyYAML."""
    doc = yaml.safe_load(path.read_text()) or {}
    names = list((doc.get("events") or {}).keys())
    for included in doc.get("include") or []:
        names += model_event_names(path.parent / included)
    return names


def render(*args: str) -> subprocess.CompletedProcess:
    assert BINARY.is_file(), f"{BINARY} is missing: run `cargo build` first (scripts/test does)"
    return subprocess.run([str(BINARY), "model", "render", *args], capture_output=True, text=True, timeout=60)


def overlap(a: dict, b: dict) -> bool:
    return a["left"] < b["right"] and b["left"] < a["right"] and a["top"] < b["bottom"] and b["top"] < a["bottom"]


def inside(inner: dict, outer: dict, slack: float = 0.5) -> bool:
    return (
        inner["left"] >= outer["left"] - slack
        and inner["right"] <= outer["right"] + slack
        and inner["top"] >= outer["top"] - slack
        and inner["bottom"] <= outer["bottom"] + slack
    )


@pytest.fixture
def browser(tmp_path):
    """A real headless Chromium with a fresh profile."""
    driver = chromium(tmp_path, 1600, 1000)
    try:
        yield driver
    finally:
        driver.quit()


def test_example_canvas_in_headless_chromium(browser, tmp_path):
    page = tmp_path / "canvas.html"
    result = render(str(MODEL), "--format", "html", "--out", str(page))
    assert result.returncode == 0, result.stderr
    assert result.stdout == "", "with --out nothing goes to standard output"

    browser.get(page.as_uri())
    assert "order-fulfillment" in browser.title
    notes = browser.execute_script(MEASURE_NOTES)

    # Every event of the model, exactly once, and nothing else calls itself an event.
    expected = model_event_names(MODEL)
    assert len(expected) == 7 and len(set(expected)) == 7
    drawn = Counter(n["name"] for n in notes if n["kind"] == "event")
    assert sorted(drawn) == sorted(expected)
    assert all(count == 1 for count in drawn.values()), drawn
    assert {n["kind"] for n in notes} == {"event", "command", "aggregate", "policy", "read-model", "external"}

    # No two notes overlap on screen, and each is really drawn.
    for note in notes:
        box = note["box"]
        assert box["right"] - box["left"] > 50 and box["bottom"] - box["top"] > 50, note
    for i, a in enumerate(notes):
        for b in notes[i + 1 :]:
            assert not overlap(a["box"], b["box"]), f"{a['id']} {a['box']} overlaps {b['id']} {b['box']}"

    # Every line of text inside its sticky note, as the browser laid it out with its real font.
    for note in notes:
        assert note["lines"], note
        for line in note["lines"]:
            assert inside(line["box"], note["sticky"]), f"{note['id']}: {line['text']!r} {line['box']} leaves {note['sticky']}"

    # Standalone: the page fetched nothing.
    assert browser.execute_script("return performance.getEntriesByType('resource').length") == 0

    # The board scrolls inside the page; the picture takes the whole board.
    width, height = browser.execute_script(
        "const r = document.querySelector('svg.causeway-canvas').getBoundingClientRect();"
        "return [Math.ceil(Math.max(r.right, document.documentElement.scrollWidth)),"
        "        Math.ceil(Math.max(r.bottom, document.documentElement.scrollHeight))]"
    )
    # The whole board in one picture: make the viewport as large as the page.
    browser.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride", {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False}
    )
    screenshot = tmp_path / "canvas.png"
    assert browser.save_screenshot(str(screenshot))
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    print(f"canvas screenshot: {screenshot}")


def test_svg_opened_alone_shows_the_whole_board_at_1400_by_900(browser, tmp_path):
    """Regression: the SVG (`GET /v1/model/canvas.svg`, `model render --format svg`) opened in a
    1400×900 window showed only its top-left corner. It scales to the window: every note is on
    screen, nothing scrolls, and the board fills the window's width or height."""
    drawing = tmp_path / "canvas.svg"
    result = render(str(MODEL), "--format", "svg", "--out", str(drawing))
    assert result.returncode == 0, result.stderr
    browser.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride", {"width": 1400, "height": 900, "deviceScaleFactor": 1, "mobile": False}
    )
    browser.get(drawing.as_uri())
    assert browser.execute_script("return [window.innerWidth, window.innerHeight]") == [1400, 900]
    notes = browser.execute_script(MEASURE_NOTES)
    assert sorted(n["name"] for n in notes if n["kind"] == "event") == sorted(model_event_names(MODEL))
    window = {"left": 0, "top": 0, "right": 1400, "bottom": 900}
    for note in notes:
        assert inside(note["box"], window), f"{note['id']} {note['box']} is outside the 1400×900 window"
        assert note["box"]["right"] - note["box"]["left"] > 20, f"{note['id']} is drawn too small to see: {note['box']}"
    board = browser.execute_script(
        "const r = document.querySelector('rect.background').getBoundingClientRect();"
        "return {left: r.left, top: r.top, right: r.right, bottom: r.bottom}"
    )
    assert inside(board, window), f"the board {board} leaves the window"
    filled = max((board["right"] - board["left"]) / 1400, (board["bottom"] - board["top"]) / 900)
    assert filled > 0.99, f"the board fills {filled:.0%} of the window: {board}"
    scroll = browser.execute_script("return [document.documentElement.scrollWidth, document.documentElement.scrollHeight]")
    assert scroll[0] <= 1400 and scroll[1] <= 900, f"the window scrolls: {scroll}"
    screenshot = tmp_path / "canvas-svg.png"
    assert browser.save_screenshot(str(screenshot))
    print(f"svg screenshot at 1400x900: {screenshot}")


def test_svg_goes_to_standard_output():
    result = render(str(MODEL), "--format", "svg")
    assert result.returncode == 0, result.stderr
    svg = ET.fromstring(result.stdout)
    ns = {"svg": "http://www.w3.org/2000/svg"}
    events = [g.get("data-name") for g in svg.iterfind(".//svg:g[@data-kind='event']", ns)]
    assert sorted(events) == sorted(model_event_names(MODEL))


def test_a_model_with_errors_is_not_drawn(tmp_path):
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: broken\ncontexts:\n  a: {owner: team-a}\nevents:\n  Happened: {context: nowhere}\n")
    out = tmp_path / "canvas.html"
    result = render(str(broken), "--format", "html", "--out", str(out))
    assert result.returncode == 1
    assert f"{broken}:5:" in result.stderr and "error" in result.stderr, result.stderr
    assert result.stdout == ""
    assert not out.exists()

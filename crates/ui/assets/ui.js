// causeway's web UI: the little the pages need beyond HTML. Live updates (the page's <main>
// fetched again and swapped in), actions that change things (with confirmation), and the canvas's
// note panel. Every page works without it, except those three.
"use strict";

(() => {
  const main = document.querySelector("main");

  // Live updates: a page with data-live="N" asks for its own <main> every N seconds and swaps it
  // in, unless the reader is using something in it (a focused field, an open panel, a selection).
  const live = main && Number(main.dataset.live || 0);
  // The marker is inside <main>, which an update replaces: looked up each time.
  const say = (text) => {
    const status = document.querySelector(".live-status");
    if (status) status.textContent = text;
  };
  let inFlight = false;
  let last = null; // the last <main> the server sent

  const busy = () => {
    const active = document.activeElement;
    if (active && active !== document.body && main.contains(active) && active.matches("input, select, textarea")) return true;
    if (main.querySelector("[data-keep]")) return true;
    const sel = window.getSelection();
    return sel && !sel.isCollapsed && main.contains(sel.anchorNode);
  };
  const refresh = async () => {
    if (inFlight || document.hidden || busy()) return;
    inFlight = true;
    try {
      const r = await fetch(location.href, { headers: { "x-causeway-fragment": "main" } });
      if (r.ok) {
        const html = await r.text();
        if (html !== last) {
          main.innerHTML = html;
          last = html;
          wire(main);
        }
        say("live · updated " + new Date().toLocaleTimeString());
      } else {
        say("live · the server answered " + r.status);
      }
    } catch (e) {
      say("live · the server cannot be reached");
    } finally {
      inFlight = false;
    }
  };
  if (live > 0) {
    setInterval(refresh, live * 1000);
    say("live · every " + live + " s");
  }

  // Signed in with a token (the sign-in left its CSRF cookie): offer to sign out.
  if (document.cookie.split("; ").some((c) => c.startsWith("causeway_csrf="))) {
    document.querySelectorAll("form.sign-out").forEach((f) => (f.hidden = false));
  }

  // Actions: <form data-api="/v1/…" data-body='{…}' data-confirm="…"> posts its JSON body to the
  // API and shows the answer in the form's [data-result]; data-reload reloads the page after.
  const act = async (form) => {
    const question = form.dataset.confirm;
    if (question && !window.confirm(question)) return;
    const out = form.querySelector("[data-result]");
    const buttons = form.querySelectorAll("button");
    buttons.forEach((b) => (b.disabled = true));
    try {
      // Signed in by cookie, a write carries the CSRF token the sign-in left in a readable cookie.
      const csrf = document.cookie.split("; ").find((c) => c.startsWith("causeway_csrf="));
      const headers = { "content-type": "application/json" };
      if (csrf) headers["x-csrf-token"] = csrf.slice("causeway_csrf=".length);
      const r = await fetch(form.dataset.api, {
        method: "POST",
        headers,
        body: form.dataset.body || "{}",
      });
      const text = await r.text();
      let shown = text;
      try { shown = JSON.stringify(JSON.parse(text), null, 2); } catch (e) { /* not JSON: shown as is */ }
      if (out) {
        out.hidden = false;
        out.textContent = (r.ok ? "" : "HTTP " + r.status + "\n") + shown;
        out.dataset.status = String(r.status);
      }
      if (r.ok && form.dataset.reload !== undefined) setTimeout(() => location.reload(), 600);
    } catch (e) {
      if (out) { out.hidden = false; out.textContent = "the request failed: " + e; }
    } finally {
      buttons.forEach((b) => (b.disabled = false));
    }
  };

  // The canvas: a note opens its panel (recent events, findings) by click or Enter.
  const openNote = async (note) => {
    const panel = document.getElementById("note-panel");
    if (!panel) return;
    panel.setAttribute("data-keep", "");
    panel.innerHTML = "<p class=\"muted\">loading " + note.dataset.name + "…</p>";
    const r = await fetch("/canvas/notes/" + encodeURIComponent(note.id));
    panel.innerHTML = await r.text();
  };

  // The canvas's size survives live updates.
  let actualSize = false;
  const applyZoom = () => {
    const board = document.querySelector(".canvas-board");
    const button = document.querySelector("[data-zoom]");
    if (board) board.classList.toggle("actual", actualSize);
    if (button) button.textContent = actualSize ? "Fit to window" : "Actual size";
  };

  const wire = (root) => {
    root.querySelectorAll("[data-zoom]").forEach((button) => {
      button.addEventListener("click", () => { actualSize = !actualSize; applyZoom(); });
    });
    applyZoom();
    root.querySelectorAll("form[data-api]").forEach((form) => {
      form.addEventListener("submit", (e) => { e.preventDefault(); act(form); });
    });
    root.querySelectorAll(".canvas-board g.note").forEach((note) => {
      note.setAttribute("tabindex", "0");
      note.setAttribute("role", "button");
      note.setAttribute("aria-label", (note.dataset.kind || "note") + " " + (note.dataset.name || note.id));
      note.addEventListener("click", () => openNote(note));
      note.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); openNote(note); } });
    });
  };
  wire(document);
  document.addEventListener("click", (e) => {
    const close = e.target.closest("[data-close-panel]");
    const panel = document.getElementById("note-panel");
    if (close && panel) {
      panel.removeAttribute("data-keep");
      panel.innerHTML = "<p class=\"muted\">Choose a note to see its recent events and findings.</p>";
    }
  });

  // "/" focuses the search field, as in most consoles.
  document.addEventListener("keydown", (e) => {
    const field = document.querySelector("header input[type=search]");
    if (e.key === "/" && field && document.activeElement && !document.activeElement.matches("input, textarea, select")) {
      e.preventDefault();
      field.focus();
    }
  });
})();

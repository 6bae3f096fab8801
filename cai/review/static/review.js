// The review page: one pair at a time, keyboard first. Text goes in through textContent only,
// so a reply holding <script> or <img onerror=...> shows as characters and runs nothing.
"use strict";

let current = null;
let token = null;
let busy = false;  // a label or undo in flight: one key press labels one pair once

function show(id, visible) { document.getElementById(id).hidden = !visible; }

function fail(message) {
  const el = document.getElementById("error");
  el.textContent = message;
  el.hidden = false;
}

async function load() {
  const response = await fetch("/api/next");
  if (!response.ok) { fail("could not load the next pair: " + response.status); return; }
  const data = await response.json();
  token = data.token;
  current = data.pair_id || null;
  const p = data.progress;
  document.getElementById("progress").textContent =
    p ? p.done + " of " + p.total + " labelled" : "all labelled";
  show("pair", current !== null);
  show("done", current === null);
  if (current === null) return;
  const conversation = document.getElementById("conversation");
  conversation.replaceChildren();
  for (const m of data.prompt) {
    if (m.role === "system") continue;
    const turn = document.createElement("div");
    turn.className = "turn";
    const role = document.createElement("span");
    role.className = "role";
    role.textContent = m.role + ": ";
    turn.append(role, document.createTextNode(m.content));
    conversation.append(turn);
  }
  document.getElementById("question").textContent = data.question;
  document.getElementById("a").textContent = data.a;
  document.getElementById("b").textContent = data.b;
  window.scrollTo(0, 0);
}

async function post(path, body) {
  const response = await fetch(path, {
    method: "POST",
    headers: {"Content-Type": "application/json", "X-Review-Token": token},
    body: JSON.stringify(body || {}),
  });
  if (!response.ok) {
    const text = await response.text();
    fail("not saved: " + text);
    return false;
  }
  document.getElementById("error").hidden = true;
  return true;
}

// One request at a time: a second press (or a held key) while one is in flight would label
// the same pair again, or the next one unseen.
async function once(path, body) {
  if (busy) return;
  busy = true;
  try {
    if (await post(path, body)) await load();
  } finally {
    busy = false;
  }
}

function choose(choice) {
  if (current !== null) return once("/api/label", {pair_id: current, choice: choice});
}

function undo() { return once("/api/undo"); }

const KEYS = {a: "a", b: "b", t: "tie", s: "skip"};

document.addEventListener("keydown", (event) => {
  if (event.ctrlKey || event.metaKey || event.altKey || event.repeat) return;
  const key = event.key.toLowerCase();
  if (key in KEYS) { event.preventDefault(); choose(KEYS[key]); }
  else if (key === "u") { event.preventDefault(); undo(); }
});

for (const button of document.querySelectorAll("button[data-choice]")) {
  button.addEventListener("click", () => choose(button.dataset.choice));
}
document.getElementById("undo").addEventListener("click", undo);

load();

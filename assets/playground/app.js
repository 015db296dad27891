// chatgate playground: model list, streaming chat over /api/v1/chat (SSE),
// and per answer its latency, tokens, cost and badges. Everything a server
// or a model sent is put into the page with textContent, never as HTML.
"use strict";

const $ = (id) => document.getElementById(id);
const KEY_SLOT = "chatgate.key";

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = String(text);
  return node;
}

function headers() {
  const h = { "content-type": "application/json" };
  const key = $("key").value.trim();
  if (key) h["x-api-key"] = key;
  return h;
}

function errorText(body, status) {
  const e = body && body.error;
  return e && e.message ? `${e.code || "error"}: ${e.message}` : `HTTP ${status}`;
}

async function loadModels() {
  const status = $("models-status");
  status.textContent = "loading…";
  try {
    const res = await fetch("/api/v1/models", { headers: headers() });
    const body = await res.json().catch(() => null);
    if (!res.ok) throw new Error(errorText(body, res.status));
    const select = $("model");
    const previous = select.value;
    select.replaceChildren();
    for (const m of (body && body.data) || []) {
      const option = el("option", "", m.id);
      option.value = m.id;
      select.append(option);
    }
    if (previous) select.value = previous;
    status.textContent = `${select.options.length} model(s)`;
  } catch (err) {
    status.textContent = String(err.message || err);
  }
}

// Splits an SSE byte stream into {event, data} records (blank-line separated).
async function* sseEvents(body) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value.replace(/\r\n?/g, "\n");
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      let event = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith(":")) continue;
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        let val = colon < 0 ? "" : line.slice(colon + 1);
        if (val.startsWith(" ")) val = val.slice(1);
        if (field === "event") event = val;
        else if (field === "data") data.push(val);
      }
      if (data.length) yield { event, data: data.join("\n") };
    }
  }
}

function showDone(meta, done, started) {
  const ms = Math.round(performance.now() - started);
  const usage = done.usage || {};
  const cost = typeof usage.cost_usd === "number" ? `$${usage.cost_usd.toFixed(6)}` : "—";
  meta.replaceChildren(
    el("span", "latency", `${ms} ms`),
    el("span", "", " · "),
    el("span", "tokens", `${usage.input_tokens ?? "?"} in / ${usage.output_tokens ?? "?"} out tokens`),
    el("span", "", " · "),
    el("span", "cost", cost),
  );
  if (done.model) meta.append(el("span", "badge model", done.model));
  if (done.cached) meta.append(el("span", "badge cached", "cached"));
  if (done.degraded) meta.append(el("span", "badge degraded", "degraded"));
  if (done.variant) meta.append(el("span", "badge variant", `variant ${done.variant}`));
}

async function ask(prompt) {
  const turn = el("article", "turn");
  const answer = el("div", "answer");
  const meta = el("div", "meta", "…");
  turn.append(el("div", "prompt", prompt), answer, meta);
  $("answers").append(turn);
  const started = performance.now();
  const body = { messages: [{ role: "user", content: prompt }], stream: true };
  if ($("model").value) body.model = $("model").value;
  try {
    const res = await fetch("/api/v1/chat", { method: "POST", headers: headers(), body: JSON.stringify(body) });
    if (!res.ok || !res.body) {
      const err = await res.json().catch(() => null);
      throw new Error(errorText(err, res.status));
    }
    for await (const { event, data } of sseEvents(res.body)) {
      const parsed = JSON.parse(data);
      if (event === "delta") {
        answer.textContent += parsed.content || "";
      } else if (event === "done") {
        showDone(meta, parsed, started);
        turn.dataset.state = "done";
      } else if (event === "error") {
        throw new Error(errorText(parsed, res.status));
      }
    }
  } catch (err) {
    meta.replaceChildren(el("span", "error", String(err.message || err)));
    turn.dataset.state = "error";
  }
}

function init() {
  const key = $("key");
  key.value = sessionStorage.getItem(KEY_SLOT) || "";
  key.addEventListener("change", () => {
    sessionStorage.setItem(KEY_SLOT, key.value);
    loadModels();
  });
  $("reload-models").addEventListener("click", loadModels);
  $("ask").addEventListener("submit", async (e) => {
    e.preventDefault();
    const prompt = $("prompt").value.trim();
    if (!prompt) return;
    $("send").disabled = true;
    try {
      await ask(prompt);
    } finally {
      $("send").disabled = false;
    }
  });
  loadModels();
}

document.addEventListener("DOMContentLoaded", init);

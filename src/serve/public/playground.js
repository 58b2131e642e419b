// The playground: the same input to one or two models of this server (the base, or the base with an
// adapter), each answer streamed into its pane as the server sends it (POST /v1/completions, stream: true).
const OFF = "";
const $ = (selector, root = document) => root.querySelector(selector);

const panes = ["a", "b"].map((key) => {
  const root = $(`#pane-${key}`);
  return { key, root, select: $("select", root), status: $(".status", root), output: $(".output", root), stats: $(".stats", root) };
});
/** Aborts the requests of the run in progress when a new one starts. */
let running;

function headers() {
  const key = $("#api-key").value.trim();
  return { "content-type": "application/json", ...(key ? { authorization: `Bearer ${key}` } : {}) };
}

function showError(message) {
  const box = $("#error");
  box.textContent = message ?? "";
  box.hidden = message === undefined;
}

/** An OpenAI error body's message, or the status line when the body is not one. */
async function errorOf(response) {
  const text = await response.text();
  try {
    return JSON.parse(text).error.message;
  } catch {
    return `${response.status} ${response.statusText}${text ? `: ${text.slice(0, 200)}` : ""}`;
  }
}

/** GET /v1/models: the base (no parent) first, then its adapters, as the options of both panes. */
async function loadModels() {
  const response = await fetch("v1/models", { headers: headers() });
  if (!response.ok) throw new Error(`cannot list the models: ${await errorOf(response)}`);
  const { data } = await response.json();
  const base = data.find((m) => m.parent == null) ?? data[0];
  const adapters = data.filter((m) => m !== base);
  $("#base-model").textContent = base.id;
  for (const pane of panes) {
    // A choice made before a reload of the list (a key typed after a 401) is kept when still offered.
    const previous = pane.select.options.length > 0 ? pane.select.value : undefined;
    pane.select.replaceChildren();
    if (pane.key === "b") pane.select.append(new Option("off", OFF));
    pane.select.append(new Option(`none (the base model)`, base.id));
    for (const a of adapters) {
      const about = [a.method, a.version === undefined ? undefined : `v${a.version}`].filter(Boolean).join(", ");
      pane.select.append(new Option(about ? `${a.id} (${about})` : a.id, a.id));
    }
    const keep = [...pane.select.options].some((o) => o.value === previous) ? previous : undefined;
    // Side by side from the start: the first two adapters when there are two.
    pane.select.value = keep ?? (pane.key === "a" ? (adapters[0]?.id ?? base.id) : (adapters[1]?.id ?? OFF));
    pane.root.classList.toggle("off", pane.select.value === OFF);
  }
}

/** The `data:` payloads of a server-sent event stream, as they arrive. */
async function* sseData(body) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value.replace(/\r\n?/g, "\n");
    for (let end = buffer.indexOf("\n\n"); end >= 0; end = buffer.indexOf("\n\n")) {
      const event = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const data = event.split("\n").filter((line) => line.startsWith("data:")).map((line) => line.slice(5).replace(/^ /, "")).join("\n");
      if (data) yield data;
    }
  }
}

/** Stream one completion into a pane: text as it comes, then tokens, time to first token and total time. */
async function runPane(pane, request, signal) {
  pane.output.textContent = "";
  pane.stats.textContent = "";
  pane.status.textContent = "running…";
  pane.root.dataset.state = "running";
  const started = performance.now();
  let firstToken;
  let chunks = 0;
  let usage;
  let finish;
  try {
    const response = await fetch("v1/completions", {
      method: "POST",
      headers: headers(),
      body: JSON.stringify({ ...request, model: pane.select.value, stream: true, stream_options: { include_usage: true } }),
      signal,
    });
    if (!response.ok) throw new Error(await errorOf(response));
    for await (const data of sseData(response.body)) {
      if (data === "[DONE]") break;
      const chunk = JSON.parse(data);
      if (chunk.error) throw new Error(chunk.error.message);
      if (chunk.usage) usage = chunk.usage;
      const choice = chunk.choices?.[0];
      if (choice === undefined) continue;
      if (choice.text) {
        firstToken ??= performance.now();
        chunks++;
        pane.output.textContent += choice.text;
      }
      finish = choice.finish_reason ?? finish;
    }
    const seconds = (performance.now() - started) / 1000;
    const tokens = usage?.completion_tokens ?? chunks;
    const ttft = firstToken === undefined ? "" : ` · first token ${Math.round(firstToken - started)} ms`;
    pane.stats.textContent = `${tokens} tokens${ttft} · ${seconds.toFixed(2)} s${finish ? ` · ${finish}` : ""}`;
    pane.status.textContent = "done";
    pane.root.dataset.state = "done";
  } catch (err) {
    if (signal.aborted) return;
    pane.status.textContent = "failed";
    pane.root.dataset.state = "failed";
    pane.stats.textContent = err.message;
  }
}

async function run(event) {
  event?.preventDefault();
  running?.abort();
  running = new AbortController();
  showError(undefined);
  const maxTokens = Number($("#max-tokens").value);
  const temperature = Number($("#temperature").value);
  const request = { prompt: $("#input").value, max_tokens: maxTokens, temperature };
  const active = panes.filter((p) => p.select.value !== OFF);
  await Promise.all(active.map((pane) => runPane(pane, request, running.signal)));
}

for (const pane of panes) {
  pane.select.addEventListener("change", () => pane.root.classList.toggle("off", pane.select.value === OFF));
}
$("#request").addEventListener("submit", run);
$("#input").addEventListener("keydown", (e) => {
  if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) run(e);
});
// A key typed after a 401 lists the models again.
$("#api-key").addEventListener("change", () => loadModels().then(() => showError(undefined), (err) => showError(err.message)));
loadModels().then(
  () => document.body.classList.add("ready"),
  (err) => showError(err.message),
);

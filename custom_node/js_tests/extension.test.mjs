// DOM-level test of web/runpod.js: the module is loaded from a tree laid out like ComfyUI's
// (scripts/app.js, scripts/api.js, extensions/comfy-runpod/) with a fake app, api and a
// tiny fake DOM, so it runs under plain node without a browser or npm packages.
import { test, before } from "node:test";
import assert from "node:assert/strict";
import { cpSync, mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const WEB = join(dirname(fileURLToPath(import.meta.url)), "..", "web");

class FakeElement {
  constructor(tag) {
    this.tagName = tag.toUpperCase();
    this.children = [];
    this.style = {};
    this.listeners = {};
    this.parent = null;
    this.textContent = "";
  }
  append(...nodes) {
    for (const node of nodes) {
      const child = typeof node === "string" ? Object.assign(new FakeElement("#text"), { textContent: node }) : node;
      child.parent = this;
      this.children.push(child);
    }
  }
  remove() {
    if (this.parent) this.parent.children = this.parent.children.filter((c) => c !== this);
    this.parent = null;
  }
  get isConnected() {
    let node = this;
    while (node.parent) node = node.parent;
    return node === fakeDocument.body || node === fakeDocument.head;
  }
  get firstChild() {
    return this.children[0] ?? null;
  }
  addEventListener(type, fn) {
    (this.listeners[type] ??= []).push(fn);
  }
  async click() {
    await Promise.all((this.listeners.click ?? []).map((fn) => fn()));
  }
  all(predicate) {
    const found = [];
    const walk = (node) => {
      if (predicate(node)) found.push(node);
      node.children.forEach(walk);
    };
    walk(this);
    return found;
  }
  text() {
    return this.textContent + this.children.map((c) => c.text()).join("");
  }
}

const fakeDocument = {
  head: new FakeElement("head"),
  body: new FakeElement("body"),
  createElement: (tag) => new FakeElement(tag),
  getElementById: (id) => fakeDocument.head.all((n) => n.id === id)[0] ?? null,
};

const settings = new Map();
const executed = [];
const fetches = [];
const routes = new Map(); // route -> function(init) returning [status, body]
const registered = [];
const localQueue = [];
const toasts = [];

// The frontend's own default keybindings (keybindingService in the 1.27.10 and 1.32.4 bundles,
// identical in both apart from "f"); registering one of these combos again is refused with an
// error toast on every page load, and the key keeps doing the core command.
const CORE_COMBOS = [
  { ctrl: true, key: "Enter" }, // Comfy.QueuePrompt
  { ctrl: true, shift: true, key: "Enter" }, // Comfy.QueuePromptFront
  { ctrl: true, alt: true, key: "Enter" }, // Comfy.Interrupt
  { ctrl: true, shift: true, key: "k" },
  { alt: true, shift: true, key: "+" },
  { alt: true, key: "+" },
  { ctrl: true, key: "," },
  { alt: true, key: "-" },
  { key: "." },
  { alt: true, key: "=" },
  { key: "Escape" },
  { ctrl: true, key: "b" },
  { alt: true, key: "c" },
  { ctrl: true, shift: true, key: "e" },
  { key: "f" },
  { ctrl: true, key: "g" },
  { key: "h" },
  { alt: true, key: "m" },
  { ctrl: true, key: "m" },
  { ctrl: true, key: "o" },
  { key: "p" },
  { key: "q" },
  { key: "r" },
  { ctrl: true, key: "s" },
  { key: "v" },
  { key: "w" },
];
const comboKey = (c) => [c.ctrl, c.alt, c.shift, c.meta, c.key.toLowerCase()].map((v) => String(v ?? false)).join("+");

const fakeApp = {
  registerExtension: (ext) => registered.push(ext),
  graphToPrompt: async () => ({ output: { 1: { class_type: "SaveImage", inputs: {} } }, workflow: { nodes: [1] } }),
  extensionManager: {
    setting: { get: (id) => settings.get(id) },
    command: { execute: (id) => executed.push(id) },
    toast: { add: (t) => toasts.push(t) },
  },
};
const fakeApi = {
  apiURL: (route) => `/api${route}`,
  queuePrompt: async (number, data) => {
    localQueue.push(data);
    return { prompt_id: "local-1", number, node_errors: {} };
  },
  fetchApi: async (route, init = {}) => {
    fetches.push({ route, init });
    const handler = routes.get(route);
    const [status, body] = handler ? await handler(init) : [404, { error: { code: "UNKNOWN", message: route } }];
    return { status, json: async () => body };
  },
};

let ext;

before(async () => {
  const root = mkdtempSync(join(tmpdir(), "comfy-web-"));
  mkdirSync(join(root, "scripts"));
  writeFileSync(join(root, "scripts", "app.js"), "export const app = globalThis.__fakeComfy.app;\n");
  writeFileSync(join(root, "scripts", "api.js"), "export const api = globalThis.__fakeComfy.api;\n");
  cpSync(WEB, join(root, "extensions", "comfy-runpod"), { recursive: true });
  globalThis.__fakeComfy = { app: fakeApp, api: fakeApi };
  globalThis.document = fakeDocument;
  await import(pathToFileURL(join(root, "extensions", "comfy-runpod", "runpod.js")).href);
  assert.equal(registered.length, 1);
  [ext] = registered;
});

async function until(predicate, what) {
  for (let i = 0; i < 300; i++) {
    if (predicate()) return;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  assert.fail(`timed out waiting for ${what}: ${fakeDocument.body.text()}`);
}

test("registers its command, menu entry, keybinding, action-bar button and setting", async () => {
  assert.equal(ext.name, "comfy-runpod.QueueOnRunPod");
  const [command] = ext.commands;
  assert.equal(command.id, "ComfyRunPod.QueueOnRunPod");
  assert.equal(command.label, "Queue on RunPod");
  assert.deepEqual(ext.menuCommands, [{ path: ["Extensions", "RunPod"], commands: [command.id] }]);
  const [keybinding] = ext.keybindings;
  assert.equal(keybinding.commandId, command.id);
  assert.deepEqual(keybinding.combo, { key: "Enter", alt: true });
  const taken = new Set(CORE_COMBOS.map(comboKey));
  assert.ok(!taken.has(comboKey(keybinding.combo)), "the keybinding clashes with a core one");
  const [button] = ext.actionBarButtons;
  assert.equal(button.label, "Queue on RunPod");
  assert.match(button.icon, /^pi pi-/);
  button.onClick();
  assert.deepEqual(executed, [command.id]);
  const [setting] = ext.settings;
  assert.equal(setting.id, "ComfyRunPod.RunOnRunPod");
  assert.equal(setting.type, "boolean");
  assert.equal(setting.defaultValue, false);
});

test("the command queues the open workflow and shows progress then the images", async () => {
  const polls = [
    [200, { id: "j1", status: "IN_PROGRESS", done: false, progress: { node: "1", class_type: "SaveImage", nodes_done: 1, nodes_total: 2 } }],
    [200, { id: "j1", status: "COMPLETED", done: true, progress: null }],
  ];
  routes.set("/runpod/queue", () => [200, { id: "j1", status: "IN_QUEUE", inputs: [] }]);
  routes.set("/runpod/status/j1", () => polls.length > 1 ? polls.shift() : polls[0]);
  routes.set("/runpod/results/j1", () => [200, {
    id: "j1", status: "COMPLETED",
    outputs: [
      { node_id: "1", depth: 0, kind: "image", filename: "a.png", subfolder: "runpod/j1", url: "/view?filename=a.png&subfolder=runpod%2Fj1&type=output" },
      { node_id: "2", depth: 4, kind: "image", filename: "final.png", subfolder: "runpod/j1", url: "/view?filename=final.png&subfolder=runpod%2Fj1&type=output" },
    ],
  }]);
  await ext.commands[0].function();
  const queued = fetches.find((f) => f.route === "/runpod/queue");
  assert.deepEqual(JSON.parse(queued.init.body), { prompt: { 1: { class_type: "SaveImage", inputs: {} } }, workflow: { nodes: [1] } });
  await until(() => fakeDocument.body.all((n) => n.tagName === "IMG").length === 2, "the images");
  const images = fakeDocument.body.all((n) => n.tagName === "IMG");
  assert.deepEqual(images.map((i) => i.src), [
    "/api/view?filename=final.png&subfolder=runpod%2Fj1&type=output",
    "/api/view?filename=a.png&subfolder=runpod%2Fj1&type=output",
  ]);
  assert.match(fakeDocument.body.text(), /RunPod j1/);
  assert.ok(fakeDocument.head.all((n) => n.id === "runpod-style").length === 1);
});

test("a failed job shows its error readably, and cancel reaches the backend", async () => {
  let finished = false;
  routes.set("/runpod/queue", () => [200, { id: "j2", status: "IN_QUEUE" }]);
  routes.set("/runpod/status/j2", () => [200, finished
    ? { id: "j2", status: "FAILED", done: true, error: { code: "VALIDATION_FAILED" } }
    : { id: "j2", status: "IN_QUEUE", done: false }]);
  routes.set("/runpod/cancel/j2", () => [200, { id: "j2", status: "CANCELLED" }]);
  routes.set("/runpod/results/j2", () => [200, {
    id: "j2", status: "FAILED",
    error: { code: "VALIDATION_FAILED", message: "1 problem", details: [{ node_id: "1", class_type: "LoadImage", input: "image", message: "missing" }] },
    text: "VALIDATION_FAILED: 1 problem\n  - node 1 (LoadImage) input image: missing",
  }]);
  await ext.commands[0].function();
  const panel = fakeDocument.body.all((n) => n.className === "runpod-job").at(-1);
  const cancel = panel.all((n) => n.tagName === "BUTTON" && n.textContent === "Cancel")[0];
  await cancel.click();
  assert.ok(fetches.some((f) => f.route === "/runpod/cancel/j2" && f.init.method === "POST"));
  finished = true;
  await until(() => panel.all((n) => n.tagName === "PRE").length === 1, "the error");
  const [pre] = panel.all((n) => n.tagName === "PRE");
  assert.match(pre.textContent, /node 1 \(LoadImage\) input image: missing/);
  assert.match(panel.text(), /Failed: VALIDATION_FAILED/);
});

test("the panel says Done only together with the outputs", async () => {
  let release;
  const results = new Promise((resolve) => (release = resolve));
  routes.set("/runpod/queue", () => [200, { id: "j5", status: "IN_QUEUE" }]);
  routes.set("/runpod/status/j5", () => [200, { id: "j5", status: "COMPLETED", done: true, progress: null }]);
  routes.set("/runpod/results/j5", () => results);
  await ext.commands[0].function();
  const panel = fakeDocument.body.all((n) => n.className === "runpod-job").at(-1);
  const status = () => panel.all((n) => n.className === "runpod-status")[0].textContent;
  await until(() => fetches.some((f) => f.route === "/runpod/results/j5"), "the results request");
  assert.equal(status(), "Fetching results");
  assert.equal(panel.all((n) => n.tagName === "IMG").length, 0);
  release([200, { id: "j5", status: "COMPLETED", outputs: [
    { node_id: "9", depth: 0, kind: "image", filename: "a.png", subfolder: "runpod/j5", url: "/view?filename=a.png" },
  ] }]);
  await until(() => status() === "Done", "Done");
  assert.equal(panel.all((n) => n.tagName === "IMG").length, 1);
  assert.equal(panel.all((n) => n.textContent === "Cancel").length, 0);
});

test("a final status is not the end while the backend still closes the job", async () => {
  // The backend's job reads FAILED on the first poll while it still closes the job.
  let polls = 0;
  routes.set("/runpod/queue", () => [200, { id: "j6", status: "IN_QUEUE" }]);
  routes.set("/runpod/status/j6", () => [200, ++polls < 2
    ? { id: "j6", status: "FAILED", done: false }
    : { id: "j6", status: "FAILED", done: true, error: { code: "VALIDATION_FAILED" } }]);
  routes.set("/runpod/results/j6", () => (polls < 2
    ? [409, { error: { code: "NOT_DONE", message: "job j6 is FAILED; ask /runpod/status until done" } }]
    : [200, { id: "j6", status: "FAILED", error: { code: "VALIDATION_FAILED", message: "1 problem" }, text: "VALIDATION_FAILED: 1 problem" }]));
  await ext.commands[0].function();
  const panel = fakeDocument.body.all((n) => n.className === "runpod-job").at(-1);
  await until(() => panel.all((n) => n.tagName === "PRE").length === 1, "the error");
  assert.match(panel.text(), /Failed: VALIDATION_FAILED/);
  assert.equal(fetches.filter((f) => f.route === "/runpod/results/j6").length, 1);
});

test("a refused queue request is shown, not thrown", async () => {
  routes.set("/runpod/queue", () => [503, { error: { code: "NOT_CONFIGURED", message: "no endpoint: set RUNPOD_ENDPOINT_ID" } }]);
  await ext.commands[0].function();
  assert.match(fakeDocument.body.text(), /NOT_CONFIGURED: no endpoint/);
});

test("the Run on RunPod setting sends Run to RunPod; off leaves the local queue alone", async () => {
  ext.setup(fakeApp);
  settings.set("ComfyRunPod.RunOnRunPod", false);
  const local = await fakeApi.queuePrompt(0, { output: { 1: {} }, workflow: {} });
  assert.equal(local.prompt_id, "local-1");
  assert.equal(localQueue.length, 1);

  settings.set("ComfyRunPod.RunOnRunPod", true);
  routes.set("/runpod/queue", () => [200, { id: "j3", status: "IN_QUEUE" }]);
  routes.set("/runpod/status/j3", () => [200, { id: "j3", status: "CANCELLED", done: true }]);
  routes.set("/runpod/results/j3", () => [200, { id: "j3", status: "CANCELLED", error: { code: "CANCELLED", message: "cancelled" } }]);
  const remote = await fakeApi.queuePrompt(0, { output: { 7: { class_type: "X", inputs: {} } }, workflow: {} });
  // No prompt_id: app.queuePrompt would keep it as a local job that never ends.
  assert.equal(remote.prompt_id, undefined);
  assert.equal(remote.runpod_job_id, "j3");
  assert.deepEqual(remote.node_errors, {});
  assert.equal(localQueue.length, 1);
  const sent = fetches.filter((f) => f.route === "/runpod/queue").at(-1);
  assert.deepEqual(JSON.parse(sent.init.body).prompt, { 7: { class_type: "X", inputs: {} } });
  await until(() => fakeDocument.body.text().includes("Cancelled"), "the cancelled job");
  await until(() => toasts.some((t) => t.summary === "RunPod job cancelled"), "the cancel toast");
  assert.equal(toasts.find((t) => t.summary === "RunPod job cancelled").severity, "info");
});

test("Queue selected output nodes with the setting on sends only those targets to RunPod", async () => {
  settings.set("ComfyRunPod.RunOnRunPod", true);
  routes.set("/runpod/queue", () => [200, { id: "j4", status: "IN_QUEUE" }]);
  routes.set("/runpod/status/j4", () => [200, { id: "j4", status: "COMPLETED", done: true }]);
  routes.set("/runpod/results/j4", () => [200, { id: "j4", status: "COMPLETED", outputs: [] }]);
  const graph = { output: { 1: { class_type: "A", inputs: {} }, 9: { class_type: "SaveImage", inputs: {} } }, workflow: {} };
  // What app.queuePrompt(0, batchCount, queueNodeIds) passes for Comfy.QueueSelectedOutputNodes.
  await fakeApi.queuePrompt(0, graph, { partialExecutionTargets: ["9"] });
  const sent = JSON.parse(fetches.filter((f) => f.route === "/runpod/queue").at(-1).init.body);
  assert.deepEqual(sent.partial_execution_targets, ["9"]);
  assert.deepEqual(sent.prompt, graph.output);
  // A job without saved outputs says why nothing is shown.
  await until(() => fakeDocument.body.text().includes("No saved outputs"), "the empty result note");
  await fakeApi.queuePrompt(0, graph, {});
  const plain = JSON.parse(fetches.filter((f) => f.route === "/runpod/queue").at(-1).init.body);
  assert.equal("partial_execution_targets" in plain, false);
  settings.set("ComfyRunPod.RunOnRunPod", false);
});

test("a proxy hiccup while polling is ridden out; a job the backend does not know ends the watch", async () => {
  let polls = 0;
  routes.set("/runpod/queue", () => [200, { id: "j8", status: "IN_QUEUE" }]);
  routes.set("/runpod/status/j8", () => {
    polls += 1;
    if (polls === 1) throw new TypeError("Failed to fetch"); // the connection dropped
    if (polls === 2) return [502, null]; // a proxy's error page (not JSON)
    return [200, { id: "j8", status: "COMPLETED", done: true, progress: null }];
  });
  routes.set("/runpod/results/j8", () => [200, { id: "j8", status: "COMPLETED", outputs: [
    { node_id: "9", depth: 0, kind: "image", filename: "b.png", subfolder: "runpod/j8", url: "/view?filename=b.png" },
  ] }]);
  await ext.commands[0].function();
  const panel = fakeDocument.body.all((n) => n.className === "runpod-job").at(-1);
  const status = () => panel.all((n) => n.className === "runpod-status")[0].textContent;
  await until(() => status() === "Done", "Done after the hiccups");
  assert.equal(panel.all((n) => n.tagName === "IMG").length, 1);

  routes.set("/runpod/queue", () => [200, { id: "j9", status: "IN_QUEUE" }]);
  routes.set("/runpod/status/j9", () => [404, { error: { code: "UNKNOWN_JOB", message: "no job j9 here" } }]);
  await ext.commands[0].function();
  const gone = fakeDocument.body.all((n) => n.className === "runpod-job").at(-1);
  await until(() => gone.all((n) => n.tagName === "PRE").length === 1, "the error");
  assert.match(gone.text(), /Failed: UNKNOWN_JOB/);
  assert.equal(fetches.filter((f) => f.route === "/runpod/status/j9").length, 1);
});

test("a results answer that is not the backend's is an error, not 'no outputs'", async () => {
  routes.set("/runpod/queue", () => [200, { id: "j10", status: "IN_QUEUE" }]);
  routes.set("/runpod/status/j10", () => [200, { id: "j10", status: "COMPLETED", done: true }]);
  routes.set("/runpod/results/j10", () => [502, null]);
  await ext.commands[0].function();
  const panel = fakeDocument.body.all((n) => n.className === "runpod-job").at(-1);
  await until(() => panel.all((n) => n.tagName === "PRE").length === 1, "the error");
  assert.match(panel.text(), /Failed: HTTP_502/);
  assert.doesNotMatch(panel.text(), /Done|No saved outputs/);
});

test("cancel works only once the job exists, and says so when it cannot reach ComfyUI", async () => {
  let hold;
  const queued = new Promise((resolve) => (hold = resolve));
  routes.set("/runpod/queue", () => queued);
  routes.set("/runpod/status/j11", () => [200, { id: "j11", status: "IN_PROGRESS", done: false }]);
  routes.set("/runpod/cancel/j11", () => {
    throw new TypeError("Failed to fetch");
  });
  const panels = () => fakeDocument.body.all((n) => n.className === "runpod-job");
  const before = panels().length;
  const sending = ext.commands[0].function();
  await until(() => panels().length === before + 1, "the panel");
  const panel = panels().at(-1);
  const cancel = panel.all((n) => n.textContent === "Cancel")[0];
  assert.equal(cancel.disabled, true); // no job id yet: nothing to cancel
  hold([200, { id: "j11", status: "IN_QUEUE" }]);
  await sending;
  assert.equal(cancel.disabled, false);
  await cancel.click();
  assert.match(panel.all((n) => n.className === "runpod-status")[0].textContent, /Cancel failed: Failed to fetch/);
  assert.equal(cancel.disabled, false); // can be tried again
  const sent = fetches.filter((f) => f.route === "/runpod/cancel/j11").at(-1);
  assert.equal(sent.init.headers["Content-Type"], "application/json");
  routes.set("/runpod/status/j11", () => [200, { id: "j11", status: "CANCELLED", done: true }]);
  routes.set("/runpod/results/j11", () => [200, { id: "j11", status: "CANCELLED", error: { code: "CANCELLED", message: "cancelled" }, text: "CANCELLED" }]);
  await until(() => panel.all((n) => n.tagName === "PRE").length === 1, "the end of the job");
});

test("with the setting on, a refused send is thrown like ComfyUI's own, so the batch stops", async () => {
  // api.queuePrompt was wrapped by ext.setup in the Run on RunPod test above
  settings.set("ComfyRunPod.RunOnRunPod", true);
  routes.set("/runpod/queue", () => [503, { error: { code: "NOT_CONFIGURED", message: "no endpoint configured" } }]);
  const panels = () => fakeDocument.body.all((n) => n.className === "runpod-job").length;
  const before = panels();
  await assert.rejects(
    fakeApi.queuePrompt(0, { output: { 7: { class_type: "X", inputs: {} } }, workflow: {} }),
    /Queue on RunPod: NOT_CONFIGURED: no endpoint configured/,
  );
  assert.equal(panels(), before); // shown once, by ComfyUI's error dialog
  settings.set("ComfyRunPod.RunOnRunPod", false);
});

test("a failed job offers its worker's log, fetched through the server when asked", async () => {
  routes.set("/runpod/queue", () => [200, { id: "j9", status: "IN_QUEUE" }]);
  routes.set("/runpod/status/j9", () => [200, { id: "j9", status: "FAILED", done: true, worker_id: "w1-0" }]);
  routes.set("/runpod/results/j9", () => [200, {
    id: "j9", status: "FAILED", error: { code: "EXECUTION_ERROR", message: "kaput" }, text: "EXECUTION_ERROR: kaput",
  }]);
  let logAnswer = [200, {
    id: "j9", worker_id: "w1-0",
    lines: [
      { ts: "2026-06-01T12:00:01.000001Z", source: "container", line: "INFO comfy_runpod.worker [job j9]: job j9: 2 nodes", job: true },
      { ts: "2026-06-01T12:00:02.000001Z", source: "container", line: "ValueError: kaput", job: false },
    ],
  }];
  routes.set("/runpod/worker-log/j9", () => logAnswer);
  await ext.commands[0].function();
  const panel = fakeDocument.body.all((n) => n.className === "runpod-job").at(-1);
  await until(() => panel.all((n) => n.tagName === "BUTTON" && n.textContent === "Worker log").length === 1, "the button");
  assert.ok(!fetches.some((f) => f.route === "/runpod/worker-log/j9"), "fetched before it was asked for");
  const [button] = panel.all((n) => n.tagName === "BUTTON" && n.textContent === "Worker log");
  await button.click();
  const [log] = panel.all((n) => n.className?.includes?.("runpod-worker-log"));
  assert.match(log.textContent, /^Worker w1-0, last 2 lines/);
  assert.match(log.textContent, /> 12:00:01.000 INFO comfy_runpod.worker \[job j9\]/);
  assert.match(log.textContent, /\n {2}12:00:02.000 ValueError: kaput/);
  logAnswer = [502, { error: { code: "WORKER_LOG_UNAVAILABLE", message: "worker w1-0: the worker is gone" } }];
  await button.click();
  assert.equal(panel.all((n) => n.className?.includes?.("runpod-worker-log")).length, 1);
  assert.equal(log.textContent, "Worker log unavailable: worker w1-0: the worker is gone");
});

test("a cancelled job offers no worker log", async () => {
  routes.set("/runpod/queue", () => [200, { id: "j10", status: "IN_QUEUE" }]);
  routes.set("/runpod/status/j10", () => [200, { id: "j10", status: "CANCELLED", done: true }]);
  routes.set("/runpod/results/j10", () => [200, { id: "j10", status: "CANCELLED", error: { code: "CANCELLED", message: "cancelled" } }]);
  await ext.commands[0].function();
  const panel = fakeDocument.body.all((n) => n.className === "runpod-job").at(-1);
  await until(() => /Cancelled/.test(panel.text()), "cancelled");
  assert.equal(panel.all((n) => n.tagName === "BUTTON" && n.textContent === "Worker log").length, 0);
});

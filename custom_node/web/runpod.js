// "Queue on RunPod": run the open workflow on the RunPod endpoint configured on this
// ComfyUI server (routes under /runpod, see custom_node/routes.py). The API key never
// reaches the browser: the backend holds it and talks to RunPod.
//
// Entry points: an action-bar button next to Run (frontend >= 1.32.4), a command with a
// menu entry (Extensions > RunPod) and a keybinding (Alt+Enter) everywhere, and the
// "Run on RunPod" setting, which sends the Run button's prompts to RunPod instead of the
// local queue (it wraps api.queuePrompt, so widget beforeQueued, e.g. seed randomise, the
// batch count and "Queue selected output nodes" still apply; off by default, and off means
// untouched behaviour).
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";
import {
  COMMAND_ID,
  EXTENSION_NAME,
  KEYBINDING,
  MAX_POLL_FAILURES,
  SETTING_ID,
  errorFrom,
  isDone,
  isTransient,
  nextPollDelay,
  parseQueueAnswer,
  progressFraction,
  queueRequestBody,
  resultsFrom,
  statusText,
  workerLogText,
} from "./runpod_logic.js";

const STYLE = `
.runpod-overlay{position:fixed;right:16px;bottom:16px;z-index:10000;display:flex;flex-direction:column;gap:8px;max-width:420px;font:13px sans-serif}
.runpod-job{background:#222c;color:#eee;border:1px solid #555;border-radius:8px;padding:10px;box-shadow:0 4px 16px #0008;backdrop-filter:blur(4px)}
.runpod-job header{display:flex;justify-content:space-between;gap:8px;font-weight:bold}
.runpod-job header>span:first-child{min-width:0;overflow-wrap:anywhere}
.runpod-job header>span:last-child{display:flex;gap:4px;flex-shrink:0;align-items:flex-start}
.runpod-job button{background:#444;color:#eee;border:1px solid #666;border-radius:4px;cursor:pointer;padding:2px 8px}
.runpod-bar{height:6px;background:#444;border-radius:3px;margin:6px 0;overflow:hidden}
.runpod-bar div{height:100%;background:#4a9;width:0;transition:width .3s}
.runpod-images{display:flex;flex-wrap:wrap;gap:6px;max-height:50vh;overflow:auto}
.runpod-images a{color:#9cf;display:block;font-size:11px;word-break:break-all}
.runpod-images img{max-width:190px;max-height:190px;display:block;border-radius:4px}
.runpod-error{white-space:pre-wrap;color:#f99;max-height:40vh;overflow:auto;font:12px monospace;margin:6px 0 0}
.runpod-worker-log{color:#ccc}
`;

/** The extension object for app.registerExtension; dependencies injected for tests. */
export function createExtension({ app, api, document, schedule = (fn, ms) => setTimeout(fn, ms) }) {
  let container = null;

  function el(tag, props = {}, ...children) {
    const node = document.createElement(tag);
    Object.assign(node, props);
    for (const child of children) node.append(child);
    return node;
  }

  function overlay() {
    if (container && container.isConnected !== false) return container;
    if (!document.getElementById?.("runpod-style")) {
      document.head.append(el("style", { id: "runpod-style", textContent: STYLE }));
    }
    container = el("div", { className: "runpod-overlay" });
    document.body.append(container);
    return container;
  }

  async function call(route, init) {
    const response = await api.fetchApi(route, init);
    let body = null;
    try {
      body = await response.json();
    } catch {
      body = null;
    }
    return { status: response.status, body };
  }

  function toast(severity, summary, detail) {
    app.extensionManager?.toast?.add?.({ severity, summary, detail, life: 5000 });
  }

  /** One panel per job: status, progress, cancel; then images or the error. */
  function jobPanel(title) {
    const status = el("span", { className: "runpod-status", textContent: "Sending…" });
    const bar = el("div");
    const close = el("button", { textContent: "×", title: "Close" });
    // enabled once the job id is known (wireCancel)
    const cancel = el("button", { textContent: "Cancel", title: "Cancel the job on RunPod", disabled: true });
    const body = el("div", { className: "runpod-body" });
    const panel = el(
      "div",
      { className: "runpod-job" },
      el("header", {}, el("span", { textContent: title }), el("span", {}, cancel, close)),
      status,
      el("div", { className: "runpod-bar" }, bar),
      body,
    );
    close.addEventListener("click", () => panel.remove());
    overlay().append(panel);
    return { panel, status, bar, cancel, body };
  }

  function showError(view, error, text) {
    view.cancel.remove?.();
    view.status.textContent = error.code === "CANCELLED" ? "Cancelled" : `Failed: ${error.code}`;
    view.body.append(el("pre", { className: "runpod-error", textContent: text }));
  }

  /**
   * A "Worker log" button under a failed job's error: fetches the recent log of the worker that
   * ran it through this server (GET /runpod/worker-log/{id}; the key stays on the server) and
   * shows it below; pressed again, it fetches the latest lines.
   */
  function addWorkerLog(view, id) {
    const button = el("button", { textContent: "Worker log", title: "The recent log of the worker that ran this job" });
    const pre = el("pre", { className: "runpod-error runpod-worker-log", textContent: "" });
    let placed = false;
    button.addEventListener("click", async () => {
      button.disabled = true;
      pre.textContent = "Reading the worker's log…";
      if (!placed) view.body.append(pre);
      placed = true;
      let answer;
      try {
        answer = await call(`/runpod/worker-log/${encodeURIComponent(id)}`);
      } catch (error) {
        answer = { status: 0, body: String(error?.message ?? error) };
      }
      pre.textContent = workerLogText(answer.status, answer.body);
      button.disabled = false;
    });
    view.body.append(el("div", {}, button));
  }

  /** Cancel from the panel: wired as soon as the job id is known. */
  function wireCancel(view, id) {
    view.cancel.disabled = false;
    view.cancel.addEventListener("click", async () => {
      view.cancel.disabled = true;
      let answer;
      try {
        answer = await call(`/runpod/cancel/${encodeURIComponent(id)}`, {
          method: "POST",
          headers: { "Content-Type": "application/json" },
        });
      } catch (error) {
        answer = { status: 0, body: null, failure: String(error?.message ?? error) };
      }
      if (answer.status !== 200) {
        view.status.textContent = `Cancel failed: ${answer.body?.error?.message ?? answer.failure ?? `HTTP ${answer.status}`}`;
        view.cancel.disabled = false;
      }
    });
  }

  async function follow(view, id) {
    let delay = 100;
    let failures = 0;
    let final;
    for (;;) {
      let answer;
      try {
        answer = await call(`/runpod/status/${encodeURIComponent(id)}`);
      } catch (error) {
        answer = { status: 0, body: String(error?.message ?? error) };
      }
      const { status, body } = answer;
      if (status !== 200) {
        // The backend keeps following the job; a hiccup between the browser and ComfyUI (a
        // proxy's 502, a dropped connection) must not turn it into a failure here.
        failures += 1;
        if (!isTransient(status) || failures >= MAX_POLL_FAILURES) {
          const error = errorFrom(status, body);
          showError(view, error, `${error.code}: ${error.message}`);
          return;
        }
        view.status.textContent = `Reconnecting to ComfyUI (${failures})…`;
      } else {
        failures = 0;
        const fraction = body.status === "COMPLETED" ? 1 : progressFraction(body.progress);
        if (fraction != null) view.bar.style.width = `${Math.round(fraction * 100)}%`;
        // Only `done` says the backend finished: it reports FAILED, CANCELLED, ... while it
        // still closes the job (results answers 409 NOT_DONE until then). The final label
        // ("Done", "Failed: ...") is shown with the results, never before them.
        if (isDone(body)) {
          final = body;
          break;
        }
        view.status.textContent = statusText(body);
      }
      await new Promise((resolve) => schedule(resolve, delay));
      delay = nextPollDelay(delay);
    }
    view.status.textContent = "Fetching results";
    const { status: resultsStatus, body: results } = await call(`/runpod/results/${encodeURIComponent(id)}`);
    const shown = resultsFrom(resultsStatus, results, (route) => api.apiURL(route));
    if (!shown.ok) {
      showError(view, shown.error, shown.text);
      if (shown.error.code === "CANCELLED") toast("info", "RunPod job cancelled", id);
      else {
        toast("error", "RunPod job failed", shown.error.message);
        addWorkerLog(view, id);
      }
      return;
    }
    view.status.textContent = statusText(final);
    view.cancel.remove?.();
    const grid = el("div", { className: "runpod-images" });
    for (const item of shown.items) {
      const link = el("a", { href: item.href ?? "#", target: "_blank", title: item.label });
      if (item.kind === "image" && item.href) link.append(el("img", { src: item.href, alt: item.label }));
      link.append(item.kind === "text" ? `${item.label}: ${item.text}` : item.label);
      grid.append(el("div", {}, link));
    }
    view.body.append(grid);
    if (!shown.items.length) {
      // The worker returns saved outputs only: PreviewImage's temp files do not come back.
      view.body.append(el("div", { textContent: "No saved outputs (previews are not returned: use a Save node)." }));
    }
    toast("success", "RunPod job done", `${shown.items.length} output(s) saved to output/runpod/${id}`);
  }

  /** Send an API-format prompt (only `targets`' branches if given) and follow the job in the overlay. */
  /**
   * A refused send from the Run-button path: thrown, as ComfyUI's own /prompt refusal is, so
   * app.queuePrompt shows it in its error dialog, stops the batch and leaves the seed alone
   * (its "after queued" widget step is skipped).
   */
  class RunPodRefused extends Error {}

  async function queuePrompt(graph, targets = null, { throwRefusal = false } = {}) {
    const view = jobPanel("RunPod");
    let answer;
    try {
      const { status, body } = await call("/runpod/queue", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: queueRequestBody(graph, targets),
      });
      answer = parseQueueAnswer(status, body);
    } catch (error) {
      answer = { ok: false, error: { code: "CLIENT_ERROR", message: String(error?.message ?? error), details: [] } };
    }
    if (!answer.ok) {
      if (throwRefusal) {
        view.panel.remove(); // ComfyUI's dialog shows it: one place, not two
        throw new RunPodRefused(`Queue on RunPod: ${answer.error.code}: ${answer.error.message}`);
      }
      showError(view, answer.error, `${answer.error.code}: ${answer.error.message}`);
      return answer;
    }
    view.panel.firstChild.firstChild.textContent = `RunPod ${answer.id}`;
    view.status.textContent = "Waiting for a worker";
    wireCancel(view, answer.id);
    follow(view, answer.id).catch((error) => showError(view, { code: "CLIENT_ERROR" }, String(error)));
    return answer;
  }

  async function queueOpenWorkflow() {
    return queuePrompt(await app.graphToPrompt());
  }

  function runOnRunPod() {
    return Boolean(app.extensionManager?.setting?.get?.(SETTING_ID));
  }

  return {
    name: EXTENSION_NAME,
    commands: [
      {
        id: COMMAND_ID,
        label: "Queue on RunPod",
        menubarLabel: "Queue on RunPod",
        icon: "pi pi-cloud-upload",
        tooltip: "Run the open workflow on the RunPod endpoint configured on this ComfyUI server",
        function: queueOpenWorkflow,
      },
    ],
    keybindings: [{ commandId: COMMAND_ID, combo: { ...KEYBINDING } }],
    menuCommands: [{ path: ["Extensions", "RunPod"], commands: [COMMAND_ID] }],
    actionBarButtons: [
      {
        icon: "pi pi-cloud-upload",
        label: "Queue on RunPod",
        tooltip: "Run the open workflow on RunPod",
        onClick: () => app.extensionManager.command.execute(COMMAND_ID),
      },
    ],
    settings: [
      {
        id: SETTING_ID,
        name: "Run on RunPod (the Run button sends workflows to the RunPod endpoint)",
        category: ["RunPod", "Queue", "Run on RunPod"],
        type: "boolean",
        defaultValue: false,
        tooltip: "When on, Run / Ctrl+Enter queue on RunPod instead of this ComfyUI. Configure the endpoint on the server (README, Queue on RunPod).",
      },
    ],
    setup() {
      // Every Run path (Run button, Ctrl+Enter, queue front, batch count, "Queue selected
      // output nodes") goes through api.queuePrompt after app.queuePrompt ran the widgets'
      // beforeQueued hooks; the selected outputs arrive as options.partialExecutionTargets.
      const original = api.queuePrompt.bind(api);
      api.queuePrompt = async (number, data, options) => {
        if (!runOnRunPod()) return original(number, data, options);
        const answer = await queuePrompt(data, options?.partialExecutionTargets, { throwRefusal: true });
        // No prompt_id: app.queuePrompt would store it as a local job that no websocket event
        // ever ends (the overlay follows the RunPod job instead).
        return { node_errors: {}, runpod_job_id: answer.id };
      };
    },
  };
}

if (app?.registerExtension) {
  app.registerExtension(createExtension({ app, api, document: globalThis.document }));
}

// Pure logic of the "Queue on RunPod" extension: no DOM, no ComfyUI imports, so node can
// test it (custom_node/js_tests/). The frontend imports every .js under web/ as an
// extension; this module only exports, so being imported that way is harmless.

export const COMMAND_ID = "ComfyRunPod.QueueOnRunPod";
export const SETTING_ID = "ComfyRunPod.RunOnRunPod";
export const EXTENSION_NAME = "comfy-runpod.QueueOnRunPod";
export const FINAL_STATUSES = new Set(["COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT", "ERROR"]);
// Alt+Enter: free in the frontend's core keymap (1.27.10 to 1.32.4), where Ctrl+Enter queues,
// Ctrl+Shift+Enter queues in front and Ctrl+Alt+Enter interrupts (a clash is refused with an
// error toast on every page load).
export const KEYBINDING = { key: "Enter", alt: true };

/** Whether the backend's job status is an end state. */
export function isFinal(status) {
  return FINAL_STATUSES.has(status);
}

/**
 * Whether GET /runpod/status's body says the backend is finished with the job, so that
 * GET /runpod/results answers. Its `done` decides: the status can already read FAILED or
 * CANCELLED while the backend still closes the job (results then answers 409 NOT_DONE).
 */
export function isDone(body) {
  return typeof body?.done === "boolean" ? body.done : isFinal(body?.status);
}

/**
 * The request body of POST /runpod/queue from app.graphToPrompt()'s result. `targets` are the
 * execution ids of the output nodes to run ("Queue selected output nodes": the frontend passes
 * them to api.queuePrompt as options.partialExecutionTargets); absent or empty means all.
 */
export function queueRequestBody(graph, targets = null) {
  if (!graph || typeof graph.output !== "object" || graph.output === null) {
    throw new Error("the workflow could not be converted to a prompt");
  }
  const body = { prompt: graph.output, workflow: graph.workflow ?? null };
  if (Array.isArray(targets) && targets.length) body.partial_execution_targets = targets.map(String);
  return JSON.stringify(body);
}

/** The backend's {error: {code, message, details}} or anything else as one error object. */
export function errorFrom(httpStatus, body) {
  const error = body && typeof body === "object" ? body.error : null;
  if (error && typeof error === "object" && error.message) {
    return { code: error.code ?? "ERROR", message: String(error.message), details: error.details ?? [], diagnostics: error.diagnostics ?? {} };
  }
  const text = typeof body === "string" ? body : "";
  return {
    code: `HTTP_${httpStatus}`,
    message: httpStatus === 403 ? "refused by ComfyUI's origin check (open ComfyUI from its own address)" : text || `the server answered HTTP ${httpStatus}`,
    details: [],
    diagnostics: {},
  };
}

/** {ok, id, inputs} or {ok: false, error} from the answer of POST /runpod/queue. */
export function parseQueueAnswer(httpStatus, body) {
  if (httpStatus === 200 && body && typeof body.id === "string") {
    return { ok: true, id: body.id, inputs: Array.isArray(body.inputs) ? body.inputs : [] };
  }
  return { ok: false, error: errorFrom(httpStatus, body) };
}

/** 0..1 from the worker's progress {nodes_done, nodes_total, step, max}, or null if unknown. */
export function progressFraction(progress) {
  if (!progress || typeof progress !== "object") return null;
  const total = Number(progress.nodes_total);
  if (!(total > 0)) return null;
  let done = Math.min(Number(progress.nodes_done) || 0, total);
  const step = Number(progress.step);
  const max = Number(progress.max);
  if (max > 0 && step >= 0 && done < total) done += Math.min(step / max, 1);
  return Math.max(0, Math.min(done / total, 1));
}

const LABELS = {
  IN_QUEUE: "Waiting for a worker",
  IN_PROGRESS: "Running",
  COMPLETED: "Done",
  FAILED: "Failed",
  CANCELLED: "Cancelled",
  TIMED_OUT: "Timed out",
  ERROR: "Error",
};

/** One line for the overlay from GET /runpod/status's body. */
export function statusText(body) {
  const status = body?.status ?? "UNKNOWN";
  let text = LABELS[status] ?? status;
  const p = body?.progress;
  if (status === "IN_PROGRESS" && p && typeof p === "object") {
    if (p.node) text += ` ${p.class_type ?? "node"} (#${p.node})`;
    if (Number(p.max) > 0 && p.step != null) text += ` step ${p.step}/${p.max}`;
    if (Number(p.nodes_total) > 0) text += `, ${p.nodes_done ?? 0}/${p.nodes_total} nodes`;
  }
  if (status === "COMPLETED" && body?.done === false) text = "Saving outputs";
  return text;
}

/**
 * A job error (custom_node/job_error.schema.json) as readable text; JobError.text() in
 * custom_node/job_error.py gives the same text (js_tests/job_errors.json holds both to it).
 */
export function formatError(error, logLines = 15) {
  const lines = [`${error?.code ?? "ERROR"}: ${error?.message ?? ""}`];
  for (const detail of error?.details ?? []) {
    if (!detail || typeof detail !== "object") {
      lines.push(`  - ${detail}`);
      continue;
    }
    const node = detail.node_id || detail.node;
    const file = [detail.subfolder, detail.filename].filter(Boolean).join("/");
    const where = [
      node ? `node ${node}` : "",
      detail.class_type ? `(${detail.class_type})` : "",
      detail.input ? `input ${detail.input}` : "",
      detail.field ? `field ${detail.field}` : "",
      file ? `file ${file}` : "",
    ].filter(Boolean).join(" ");
    const text = detail.message || "";
    lines.push(where && text ? `  - ${where}: ${text}` : `  - ${where || text}`);
    if (detail.fix) lines.push(`      fix: ${detail.fix}`);
    if (Array.isArray(detail.closest) && detail.closest.length) lines.push(`      closest available: ${detail.closest.join(", ")}`);
    if (detail.exception_type) lines.push(`      ${detail.exception_type}`);
  }
  const tail = error?.diagnostics?.log_tail ?? [];
  if (tail.length) {
    lines.push(`last ${Math.min(tail.length, logLines)} ComfyUI log lines:`);
    for (const line of tail.slice(-logLines)) lines.push(`  | ${line}`);
  }
  return lines.join("\n");
}

/** Entries deepest first (the backend already sorts; kept stable for equal depths). */
export function sortByDepth(outputs) {
  return outputs
    .map((entry, index) => ({ entry, index }))
    .sort((a, b) => (b.entry.depth ?? -1) - (a.entry.depth ?? -1) || a.index - b.index)
    .map(({ entry }) => entry);
}

/** What the overlay shows for GET /runpod/results: items to render, or an error. */
export function resultItems(results, apiURL = (route) => route) {
  if (results?.error) return { ok: false, error: results.error, text: results.text ?? formatError(results.error) };
  const items = sortByDepth(Array.isArray(results?.outputs) ? results.outputs : []).map((o) => {
    const href = o.url ? apiURL(o.url) : null;
    const label = o.subfolder ? `${o.subfolder}/${o.filename}` : o.filename ?? `node ${o.node_id}`;
    const kind = o.kind === "image" || String(o.mime ?? "").startsWith("image/") ? "image" : o.kind === "text" ? "text" : "file";
    return { kind, href, label, text: o.text ?? null, nodeId: o.node_id, depth: o.depth };
  });
  return { ok: true, items };
}

/**
 * GET /runpod/results' answer as outputs to show or an error. A non-200 answer without the
 * backend's error body (a proxy's 502 page, an empty 403) is an error too, never "no outputs".
 */
export function resultsFrom(httpStatus, body, apiURL = (route) => route) {
  if (httpStatus !== 200 && !body?.error) {
    const error = errorFrom(httpStatus, body);
    return { ok: false, error, text: formatError(error) };
  }
  return resultItems(body ?? {}, apiURL);
}

/**
 * Whether a failed GET /runpod/status is worth asking again: a network error (status 0), a
 * 5xx or a 429 from something between the browser and ComfyUI may pass; 4xx answers
 * (UNKNOWN_JOB, the origin check) will not.
 */
export function isTransient(httpStatus) {
  return httpStatus === 0 || httpStatus === 429 || httpStatus >= 500;
}

/** How many failed status polls in a row end the watch (with nextPollDelay's backoff, ~5 s). */
export const MAX_POLL_FAILURES = 6;

/** The next poll delay: quick at first (short jobs), backing off to maxMs. */
export function nextPollDelay(previousMs, maxMs = 1000) {
  return Math.min(Math.max(previousMs * 1.5, 100), maxMs);
}

/**
 * GET /runpod/worker-log/{id}'s answer as the text of the overlay's "Worker log": one line per
 * log line (time, a marker on the lines that name the job), or the error in one line.
 */
export function workerLogText(httpStatus, body, maxLines = 200) {
  if (httpStatus !== 200 || !Array.isArray(body?.lines)) {
    const error = errorFrom(httpStatus, body);
    return `Worker log unavailable: ${error.message}`;
  }
  if (!body.lines.length) return `Worker ${body.worker_id ?? "?"}: no log lines.`;
  const lines = body.lines.slice(-maxLines).map((l) => {
    const source = l.source && l.source !== "container" ? ` (${l.source})` : "";
    return `${l.job ? ">" : " "} ${String(l.ts ?? "").slice(11, 23)}${source} ${l.line ?? ""}`;
  });
  return [`Worker ${body.worker_id ?? "?"}, last ${lines.length} lines ("> " marks this job's):`, ...lines].join("\n");
}

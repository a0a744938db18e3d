// Unit tests of web/runpod_logic.js: node --test custom_node/js_tests/
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  errorFrom,
  formatError,
  isDone,
  isFinal,
  isTransient,
  nextPollDelay,
  parseQueueAnswer,
  progressFraction,
  queueRequestBody,
  resultItems,
  resultsFrom,
  sortByDepth,
  statusText,
} from "../web/runpod_logic.js";

test("queue body carries the API prompt and the UI workflow", () => {
  const body = JSON.parse(queueRequestBody({ output: { 1: { class_type: "A", inputs: {} } }, workflow: { nodes: [] } }));
  assert.deepEqual(body, { prompt: { 1: { class_type: "A", inputs: {} } }, workflow: { nodes: [] } });
  assert.throws(() => queueRequestBody({}), /could not be converted/);
  const graph = { output: { 9: { class_type: "SaveImage", inputs: {} } }, workflow: null };
  assert.deepEqual(JSON.parse(queueRequestBody(graph, ["9", 12])).partial_execution_targets, ["9", "12"]);
  assert.equal("partial_execution_targets" in JSON.parse(queueRequestBody(graph, [])), false);
  assert.equal("partial_execution_targets" in JSON.parse(queueRequestBody(graph, undefined)), false);
});

test("queue answers: an id, a structured error, an origin refusal", () => {
  assert.deepEqual(parseQueueAnswer(200, { id: "j1", status: "IN_QUEUE", inputs: ["a.png"] }), { ok: true, id: "j1", inputs: ["a.png"] });
  const refused = parseQueueAnswer(503, { error: { code: "NOT_CONFIGURED", message: "no endpoint", details: [] } });
  assert.equal(refused.ok, false);
  assert.equal(refused.error.code, "NOT_CONFIGURED");
  assert.match(parseQueueAnswer(403, null).error.message, /origin/);
  assert.equal(errorFrom(500, "boom").message, "boom");
});

test("progress combines nodes and steps, clamped", () => {
  assert.equal(progressFraction(null), null);
  assert.equal(progressFraction({ nodes_total: 0 }), null);
  assert.equal(progressFraction({ nodes_done: 1, nodes_total: 4 }), 0.25);
  assert.equal(progressFraction({ nodes_done: 1, nodes_total: 4, step: 10, max: 20 }), 0.375);
  assert.equal(progressFraction({ nodes_done: 9, nodes_total: 4, step: 1, max: 2 }), 1);
});

test("status lines", () => {
  assert.equal(statusText({ status: "IN_QUEUE" }), "Waiting for a worker");
  assert.equal(
    statusText({ status: "IN_PROGRESS", progress: { node: "3", class_type: "KSampler", step: 5, max: 20, nodes_done: 2, nodes_total: 7 } }),
    "Running KSampler (#3) step 5/20, 2/7 nodes",
  );
  assert.equal(statusText({ status: "COMPLETED", done: false }), "Saving outputs");
  assert.ok(isFinal("FAILED") && isFinal("ERROR") && !isFinal("IN_PROGRESS"));
});

test("a job is done when the backend says so, not when its status is final", () => {
  assert.equal(isDone({ status: "COMPLETED", done: true }), true);
  assert.equal(isDone({ status: "FAILED", done: false }), false); // the backend still closes it
  assert.equal(isDone({ status: "IN_PROGRESS", done: false }), false);
  assert.equal(isDone({ status: "CANCELLED" }), true); // no `done`: the status decides
  assert.equal(isDone(null), false);
});

test("errors read like the terminal's", () => {
  const text = formatError({
    code: "VALIDATION_FAILED",
    message: "1 problem",
    details: [{ node_id: "4", class_type: "CheckpointLoaderSimple", input: "ckpt_name", message: "not found", fix: "upload it", closest: ["a", "b"] }, "plain"],
    diagnostics: { log_tail: ["l1", "l2", "l3"] },
  }, 2);
  assert.equal(text, [
    "VALIDATION_FAILED: 1 problem",
    "  - node 4 (CheckpointLoaderSimple) input ckpt_name: not found",
    "      fix: upload it",
    "      closest available: a, b",
    "  - plain",
    "last 2 ComfyUI log lines:",
    "  | l2",
    "  | l3",
  ].join("\n"));
});

test("results: deepest first, stable on ties, URLs through apiURL", () => {
  const shown = resultItems({
    outputs: [
      { node_id: "5", depth: 1, kind: "image", filename: "p.png", subfolder: "runpod/j", url: "/view?filename=p.png" },
      { node_id: "9", depth: 3, kind: "image", filename: "f.png", subfolder: "runpod/j", url: "/view?filename=f.png" },
      { node_id: "2", depth: 1, kind: "text", text: "hi", filename: "2.txt", subfolder: "runpod/j", url: "/view?filename=2.txt" },
    ],
  }, (route) => `/api${route}`);
  assert.equal(shown.ok, true);
  assert.deepEqual(shown.items.map((i) => [i.nodeId, i.kind, i.href]), [
    ["9", "image", "/api/view?filename=f.png"],
    ["5", "image", "/api/view?filename=p.png"],
    ["2", "text", "/api/view?filename=2.txt"],
  ]);
  assert.equal(shown.items[0].label, "runpod/j/f.png");
  assert.deepEqual(sortByDepth([{ depth: 0, n: 1 }, { n: 2 }, { depth: 2, n: 3 }]).map((e) => e.n), [3, 1, 2]);
});

test("a failed job's results give the error and its text", () => {
  const shown = resultItems({ status: "FAILED", error: { code: "X", message: "m", details: [] } });
  assert.equal(shown.ok, false);
  assert.equal(shown.text, "X: m");
});

test("polling backs off to a ceiling", () => {
  assert.equal(nextPollDelay(100), 150);
  assert.equal(nextPollDelay(900), 1000);
  assert.equal(nextPollDelay(0), 100);
});

test("resultsFrom: a non-200 without the backend's error body is an error", () => {
  const proxy = resultsFrom(502, null);
  assert.equal(proxy.ok, false);
  assert.equal(proxy.error.code, "HTTP_502");
  const backend = resultsFrom(400, { error: { code: "GRAPH_CYCLE", message: "loop 1 -> 2 -> 1" } });
  assert.equal(backend.ok, false);
  assert.equal(backend.error.code, "GRAPH_CYCLE");
  assert.deepEqual(resultsFrom(200, { outputs: [] }), { ok: true, items: [] });
});

test("isTransient: network errors, 429 and 5xx pass; 4xx do not", () => {
  assert.deepEqual([0, 429, 500, 502, 504].map(isTransient), [true, true, true, true, true]);
  assert.deepEqual([400, 403, 404, 409].map(isTransient), [false, false, false, false]);
});

test("worker log text marks the job's lines and says why when there is none", async () => {
  const { workerLogText } = await import("../web/runpod_logic.js");
  const text = workerLogText(200, {
    worker_id: "w1-0",
    lines: [
      { ts: "2026-06-01T12:00:01.500000Z", source: "system", line: "worker w1-0 exited: exit code 1", job: false },
      { ts: "2026-06-01T12:00:01.000000Z", source: "container", line: "job j FAILED", job: true },
    ],
  });
  assert.equal(text, 'Worker w1-0, last 2 lines ("> " marks this job\'s):\n  12:00:01.500 (system) worker w1-0 exited: exit code 1\n> 12:00:01.000 job j FAILED');
  assert.equal(workerLogText(200, { worker_id: "w", lines: [] }), "Worker w: no log lines.");
  assert.equal(workerLogText(404, { error: { code: "UNKNOWN_JOB", message: "no job 'x'" } }), "Worker log unavailable: no job 'x'");
  assert.equal(workerLogText(200, { lines: [1, 2, 3].map((i) => ({ ts: "", line: String(i) })) }, 2).split("\n").length, 3);
});

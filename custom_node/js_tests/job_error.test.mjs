// The browser's renderer against the job error's one schema (../job_error.schema.json) and the
// fixtures (job_errors.json) that tests/contracts/test_job_error_schema.py validates against that schema
// and renders with custom_node/job_error.py: both runtimes must give each fixture's text.
// Run: node --test custom_node/js_tests/
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { errorFrom, formatError, resultItems, resultsFrom } from "../web/runpod_logic.js";

const read = (name) => JSON.parse(readFileSync(new URL(name, import.meta.url), "utf8"));
const schema = read("../job_error.schema.json");
const fixtures = read("./job_errors.json");
const codes = new Set(["workerCode", "platformCode", "clientCode"].flatMap((family) => schema.$defs[family].enum));

for (const fixture of fixtures) {
  test(`renders like the terminal: ${fixture.name}`, () => {
    assert.equal(formatError(fixture.error), fixture.text.join("\n"));
  });
}

test("the fixtures have the schema's fields and codes", () => {
  for (const { error } of fixtures) {
    assert.deepEqual(Object.keys(error).sort(), [...schema.required].sort());
    assert.ok(codes.has(error.code), error.code);
  }
});

test("a failed job's results show the backend's error as it came, with its text", () => {
  for (const { error, text } of fixtures) {
    const shown = resultsFrom(200, { id: "j", status: "FAILED", error, text: text.join("\n") });
    assert.equal(shown.ok, false);
    assert.deepEqual(shown.error, error);
    assert.equal(shown.text, text.join("\n"));
    // Without the backend's text, the renderer makes the same.
    assert.equal(resultItems({ error }).text, text.join("\n"));
  }
});

test("an error answer in the schema's shape passes through errorFrom unchanged", () => {
  for (const { error } of fixtures) assert.deepEqual(errorFrom(502, { error }), error);
});

test("the codes the extension treats specially are codes of the schema", () => {
  // runpod.js shows a cancelled job as "Cancelled" rather than "Failed: <code>".
  const source = readFileSync(new URL("../web/runpod.js", import.meta.url), "utf8");
  const special = [...source.matchAll(/code === "([A-Z_]+)"/g)].map((m) => m[1]);
  assert.ok(special.length > 0);
  for (const code of special) assert.ok(codes.has(code), code);
});

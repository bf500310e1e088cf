/** The JSON-lines adapter (SPEC.md §17.3), driven as a process like the conformance runner does. */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";

import { answer } from "../src/adapter.js";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");
const ADAPTER = join(ROOT, "dist", "adapter.js");
const VECTORS = join(ROOT, "..", "..", "test-vectors", "vectors");

test("answers: output, unsupported, error", () => {
  assert.deepEqual(answer('{"id":1,"kind":"no-such-kind","input":{}}'), { id: 1, unsupported: true });
  const error = answer('{"id":2,"kind":"kdf","input":{"op":"nope"}}');
  assert.equal(error.id, 2);
  assert.equal(typeof error.error, "string");
  assert.equal(typeof answer("not json").error, "string");
});

test("the compiled adapter answers every vector of x3dh.json and kdf.json, one line per request", { skip: !existsSync(ADAPTER) && "run npm run build first" }, () => {
  const requests: string[] = [];
  const expected: unknown[] = [];
  for (const file of ["x3dh.json", "kdf.json"]) {
    const parsed = JSON.parse(readFileSync(join(VECTORS, file), "utf8")) as { kind: string; vectors: { input: unknown; output: unknown }[] };
    for (const v of parsed.vectors) {
      requests.push(JSON.stringify({ id: requests.length, kind: parsed.kind, input: v.input }));
      expected.push(v.output);
    }
  }
  const run = spawnSync(process.execPath, [ADAPTER], { input: requests.join("\n") + "\n", encoding: "utf8" });
  assert.equal(run.status, 0, run.stderr);
  const lines = run.stdout.trim().split("\n");
  assert.equal(lines.length, requests.length);
  lines.forEach((line, i) => assert.deepStrictEqual(JSON.parse(line), { id: i, output: expected[i] }));
});

/**
 * Every vector of every file in test-vectors/vectors/*.json (SPEC.md §17):
 * each implemented kind must reproduce the vector's `output` exactly (same
 * keys, same values), with every random draw replayed from `*_draws`. A kind
 * this SDK does not implement FAILS this test unless it is in the commented
 * allow-list below.
 */
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";

import { vectorKind, type Json } from "../src/vectors/index.js";

const VECTOR_DIR = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "..", "test-vectors", "vectors");

/**
 * Kinds deliberately not implemented, each with the reason. Empty: every
 * kind in the vector files must pass.
 */
const NOT_IMPLEMENTED: Readonly<Record<string, string>> = {};

interface VectorFile {
  format_version: number;
  kind: string;
  vectors: { name: string; input: Json; output: Json }[];
}

const files = readdirSync(VECTOR_DIR)
  .filter((f) => f.endsWith(".json"))
  .sort();

test("the vector directory holds vector files", () => {
  assert.ok(files.length >= 7, `only ${files.length} files in ${VECTOR_DIR}`);
});

for (const file of files) {
  const parsed = JSON.parse(readFileSync(join(VECTOR_DIR, file), "utf8")) as VectorFile;
  test(`${file} (${parsed.kind})`, async (t) => {
    assert.equal(parsed.format_version, 1, "format_version");
    assert.equal(file, `${parsed.kind}.json`, "file name matches kind");
    assert.ok(parsed.vectors.length > 0, "file has vectors");
    const run = vectorKind(parsed.kind);
    if (run === undefined) {
      assert.ok(
        Object.hasOwn(NOT_IMPLEMENTED, parsed.kind),
        `kind ${parsed.kind} is not implemented and not in the allow-list`,
      );
      t.skip(`not implemented: ${NOT_IMPLEMENTED[parsed.kind]}`);
      return;
    }
    for (const vector of parsed.vectors) {
      await t.test(vector.name, () => {
        assert.deepStrictEqual(run(vector.input), vector.output);
      });
    }
  });
}

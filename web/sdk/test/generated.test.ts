/**
 * The committed generated code (src/gen) matches the .proto files it came
 * from: every message has exactly the fields (name, number) the schema
 * declares, and every enum exactly its values. When this fails, run
 * `npm run generate` and commit src/gen.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";

import type { DescFile } from "@bufbuild/protobuf";

import { file_content } from "../src/gen/content_pb.js";
import { file_session } from "../src/gen/session_pb.js";
import { file_state } from "../src/gen/state_pb.js";
import { file_transport } from "../src/gen/transport_pb.js";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");

/** Top-level messages and enums of a .proto file: name → sorted "name=number" entries. */
function declared(path: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  let current: string | undefined;
  let depth = 0;
  for (const raw of readFileSync(path, "utf8").split("\n")) {
    const line = raw.replace(/\/\/.*$/, "").trim();
    const open = /^(message|enum)\s+(\w+)\s*\{/.exec(line);
    if (open !== null && depth === 0) {
      current = open[2]!;
      out.set(current, []);
    }
    const field = /^(?:repeated\s+|optional\s+)?(?:[\w.]+\s+)?(\w+)\s*=\s*(\d+)\s*;/.exec(line);
    if (field !== null && current !== undefined && depth > 0) {
      out.get(current)!.push(`${field[1]}=${field[2]}`);
    }
    depth += (line.match(/\{/g) ?? []).length - (line.match(/\}/g) ?? []).length;
    if (depth === 0) {
      current = undefined;
    }
  }
  for (const entries of out.values()) {
    entries.sort();
  }
  return out;
}

/** The same view of a generated file descriptor. */
function generated(file: DescFile): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const message of file.messages) {
    out.set(message.name, message.fields.map((f) => `${f.name}=${f.number}`).sort());
  }
  for (const e of file.enums) {
    out.set(e.name, e.values.map((v) => `${v.name}=${v.number}`).sort());
  }
  return out;
}

for (const [proto, file] of [
  ["../../protocol/proto/content.proto", file_content],
  ["../../protocol/proto/transport.proto", file_transport],
  ["proto/session.proto", file_session],
  ["proto/state.proto", file_state],
] as const) {
  test(`src/gen matches ${proto}`, () => {
    assert.deepStrictEqual(generated(file), declared(join(ROOT, proto)), "run `npm run generate` in web/sdk");
  });
}

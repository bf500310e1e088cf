#!/usr/bin/env node
/**
 * The conformance adapter (SPEC.md §17.3): JSON lines on stdin and stdout,
 * strictly one request then one answer, so that
 * `microbot-conformance vectors --impl "node web/sdk/dist/adapter.js"` drives
 * this SDK through every vector. Exits when stdin closes.
 *
 *   {"id": 7, "kind": "x3dh", "input": {…}}  →  {"id": 7, "output": {…}}
 *                                            |  {"id": 7, "unsupported": true}
 *                                            |  {"id": 7, "error": "…"}
 */
import { createInterface } from "node:readline";

import { vectorKind, type Json } from "./vectors/index.js";

/** Answers one request line (exported for tests). */
export function answer(line: string): Json {
  let request: unknown;
  try {
    request = JSON.parse(line);
  } catch (e) {
    return { id: null, error: `request is not JSON: ${String(e)}` };
  }
  if (typeof request !== "object" || request === null || Array.isArray(request)) {
    return { id: null, error: "request is not an object" };
  }
  const { id, kind, input } = request as Json;
  if (typeof kind !== "string") {
    return { id: id ?? null, error: "request has no kind" };
  }
  const run = vectorKind(kind);
  if (run === undefined) {
    return { id: id ?? null, unsupported: true };
  }
  if (typeof input !== "object" || input === null || Array.isArray(input)) {
    return { id: id ?? null, error: "request has no input object" };
  }
  try {
    return { id: id ?? null, output: run(input as Json) };
  } catch (e) {
    return { id: id ?? null, error: e instanceof Error ? `${e.name}: ${e.message}` : String(e) };
  }
}

/** Serves requests from stdin until it closes. */
async function main(): Promise<void> {
  const lines = createInterface({ input: process.stdin, crlfDelay: Infinity });
  for await (const line of lines) {
    if (line.trim() === "") {
      continue;
    }
    process.stdout.write(`${JSON.stringify(answer(line))}\n`);
  }
}

const invokedDirectly = process.argv[1] !== undefined && import.meta.url === new URL(`file://${process.argv[1]}`).href;
if (invokedDirectly) {
  main().catch((e: unknown) => {
    console.error(e);
    process.exitCode = 1;
  });
}

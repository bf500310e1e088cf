/** The README's example (examples/session.ts) runs and prints what it says. */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { dirname, join } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");

test("examples/session.ts: a hybrid session, both ways", () => {
  const run = spawnSync(process.execPath, ["--import", "tsx", join(ROOT, "examples", "session.ts")], { cwd: ROOT, encoding: "utf8" });
  assert.equal(run.status, 0, run.stderr);
  assert.equal(run.stdout, "hello Bob hybrid\nhi Alice\n");
});

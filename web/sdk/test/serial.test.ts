/** src/client/serial.ts: tasks run one at a time in call order, a failure does not block the queue, one queue per store. */
import assert from "node:assert/strict";
import { test } from "node:test";

import { SerialQueue, sessionLock } from "../src/client/serial.js";

const tick = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

test("SerialQueue runs tasks alone and in call order, even when earlier ones take longer", async () => {
  const queue = new SerialQueue();
  const log: string[] = [];
  let running = 0;
  const task = (name: string, ms: number) =>
    queue.run(async () => {
      running++;
      assert.equal(running, 1, `${name} ran next to another task`);
      log.push(`start ${name}`);
      await tick(ms);
      log.push(`end ${name}`);
      running--;
      return name;
    });
  const results = await Promise.all([task("a", 30), task("b", 1), task("c", 10)]);
  assert.deepEqual(results, ["a", "b", "c"]);
  assert.deepEqual(log, ["start a", "end a", "start b", "end b", "start c", "end c"]);
});

test("a failed task rejects its own caller only; the next task still runs", async () => {
  const queue = new SerialQueue();
  const failed = queue.run(async () => {
    await tick(1);
    throw new Error("boom");
  });
  const next = queue.run(async () => "after");
  await assert.rejects(failed, /boom/);
  assert.equal(await next, "after");
});

test("sessionLock: the same queue for the same store, another for another store", () => {
  const a = {};
  const b = {};
  assert.equal(sessionLock(a), sessionLock(a));
  assert.notEqual(sessionLock(a), sessionLock(b));
});

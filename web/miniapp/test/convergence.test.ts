/** The sample apps' state converges: every member who applies the same events, in any order, duplicated or not, sees the same poll and checklist. */
import assert from "node:assert/strict";
import { test } from "node:test";

import type { Json } from "../src/protocol.js";
import { ChecklistState, compareStamps, PollState, parseChecklistEvent, parsePollEvent } from "../src/samples/index.js";

type Event = { from: string; update: Json };

/** A small deterministic PRNG (mulberry32), so failures reproduce. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function shuffled<T>(items: T[], random: () => number): T[] {
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  // Duplicates: a push and a fetch may deliver an event twice.
  for (let k = 0; k < 3 && out.length > 0; k++) out.splice(Math.floor(random() * out.length), 0, out[Math.floor(random() * out.length)]!);
  return out;
}

const MEMBERS = ["ann", "bob", "cy"];

/** Members acting concurrently: each sees a random subset of the others' events before acting, as on a real network. */
function pollHistory(random: () => number): Event[] {
  const copies = new Map(MEMBERS.map((m) => [m, new PollState()]));
  const all: Event[] = [{ from: "ann", update: PollState.create("Lunch?", ["Tea", "Coffee", "Soup"]) as Json }];
  for (let step = 0; step < 30; step++) {
    const member = MEMBERS[Math.floor(random() * MEMBERS.length)]!;
    const copy = copies.get(member)!;
    for (const e of all) if (random() < 0.5) copy.apply(e.from, e.update);
    const option = random() < 0.15 ? null : Math.floor(random() * 3);
    const update = copy.vote(option) as Json;
    copy.apply(member, update);
    all.push({ from: member, update });
  }
  // A second, later create by someone else loses to the first.
  all.push({ from: "bob", update: { t: "create", c: 5, question: "Dinner?", options: ["A", "B"] } });
  return all;
}

function checklistHistory(random: () => number): Event[] {
  const copies = new Map(MEMBERS.map((m) => [m, new ChecklistState()]));
  const all: Event[] = [];
  let ids = 0;
  for (let step = 0; step < 40; step++) {
    const member = MEMBERS[Math.floor(random() * MEMBERS.length)]!;
    const copy = copies.get(member)!;
    for (const e of all) if (random() < 0.5) copy.apply(e.from, e.update);
    const known = copy.view();
    const roll = random();
    let update: Json;
    if (known.length === 0 || roll < 0.35) update = copy.add(`id${ids++}`, `item ${step}`) as Json;
    else {
      const item = known[Math.floor(random() * known.length)]!;
      update = (roll < 0.85 ? copy.check(item.id, random() < 0.7) : copy.remove(item.id)) as Json;
    }
    copy.apply(member, update);
    all.push({ from: member, update });
  }
  return all;
}

test("random concurrent poll histories converge whatever the delivery order", () => {
  for (let seed = 1; seed <= 200; seed++) {
    const random = prng(seed);
    const history = pollHistory(random);
    const views = Array.from({ length: 4 }, () => {
      const s = new PollState();
      for (const e of shuffled(history, random)) s.apply(e.from, e.update);
      return s.view();
    });
    for (const v of views) assert.deepEqual(v, views[0], `seed ${seed}`);
    assert.equal(views[0]!.question, "Lunch?");
    assert.ok(views[0]!.tallies.reduce((a, b) => a + b, 0) <= MEMBERS.length);
  }
});

test("a member's last vote wins; a retracted vote counts nowhere; concurrent votes of three members all count", () => {
  const s = new PollState();
  s.apply("ann", PollState.create("Q", ["A", "B"]) as Json);
  s.apply("ann", { t: "vote", c: 2, option: 0 });
  s.apply("bob", { t: "vote", c: 2, option: 1 });
  s.apply("cy", { t: "vote", c: 2, option: 1 });
  assert.deepEqual(s.view().tallies, [1, 2]);
  s.apply("ann", { t: "vote", c: 4, option: 1 });
  s.apply("ann", { t: "vote", c: 3, option: 0 }); // older: ignored
  assert.deepEqual(s.view().tallies, [0, 3]);
  s.apply("bob", { t: "vote", c: 5, option: null });
  assert.deepEqual(s.view().tallies, [0, 2]);
  assert.equal(s.clock.next(), 6);
});

test("random concurrent checklist histories converge whatever the delivery order", () => {
  for (let seed = 1; seed <= 200; seed++) {
    const random = prng(seed);
    const history = checklistHistory(random);
    const views = Array.from({ length: 4 }, () => {
      const s = new ChecklistState();
      for (const e of shuffled(history, random)) s.apply(e.from, e.update);
      return s.view();
    });
    for (const v of views) assert.deepEqual(v, views[0], `seed ${seed}`);
  }
});

test("checklist conflicts: concurrent checks by (clock, author); remove beats a concurrent check; a check before its add waits", () => {
  const s = new ChecklistState();
  s.apply("bob", { t: "check", c: 3, id: "x", done: true }); // before its add
  assert.deepEqual(s.view(), []);
  s.apply("ann", { t: "add", c: 1, id: "x", text: "milk" });
  s.apply("ann", { t: "add", c: 1, id: "y", text: "eggs" });
  assert.deepEqual(s.view().map((i) => [i.text, i.done, i.doneBy]), [["milk", true, "bob"], ["eggs", false, undefined]]);
  // Same clock: the later author (bytewise) wins.
  s.apply("cy", { t: "check", c: 3, id: "x", done: false });
  assert.equal(s.view()[0]!.done, false);
  s.apply("ann", { t: "check", c: 4, id: "y", done: true });
  s.apply("bob", { t: "remove", c: 4, id: "y" });
  assert.deepEqual(s.view().map((i) => i.text), ["milk"]);
  // Re-adding the same text is a new item.
  s.apply("bob", { t: "add", c: 5, id: "z", text: "eggs" });
  assert.deepEqual(s.view().map((i) => i.text), ["milk", "eggs"]);
});

test("events that break the app's form are ignored", () => {
  const bad: Json[] = [null, 1, "vote", [], { t: "vote", c: 0, option: 1 }, { t: "vote", c: 1.5, option: 1 }, { t: "vote", c: 1, option: -1 }, { t: "create", c: 1, question: "Q", options: ["one"] }, { t: "create", c: 1, question: "", options: ["a", "b"] }, { t: "nope", c: 1 }];
  for (const b of bad) assert.equal(parsePollEvent(b), undefined, JSON.stringify(b));
  const badItems: Json[] = [{ t: "add", c: 1, id: "", text: "a" }, { t: "add", c: 1, id: "x", text: "" }, { t: "check", c: 1, id: "x", done: "yes" }, { t: "remove", c: 1 }, { t: "add", c: 1, id: "x".repeat(65), text: "a" }];
  for (const b of badItems) assert.equal(parseChecklistEvent(b), undefined, JSON.stringify(b));
  const s = new PollState();
  assert.equal(s.apply("ann", { t: "vote", c: 1, option: "A" }), false);
  assert.deepEqual(s.view(), { options: [], tallies: [], votes: [] });
  assert.equal(compareStamps({ c: 1, from: "b" }, { c: 1, from: "a" }), 1);
});

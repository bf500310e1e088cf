/**
 * The shared checklist's state (SPEC.md §11.9, app id `"checklist"`): pure,
 * convergent. Items form an observed-remove set: every add carries a fresh
 * random id, a remove removes that id for good (so removing wins over a
 * concurrent check, and adding the same text again is a new item); each
 * item's `done` is a last-writer-wins register ordered by (clock, author).
 * A check that arrives before its add is kept and applies once the add is
 * here.
 */
import type { Json } from "../protocol.js";
import { compareStamps, isClock, isText, LamportClock, type Stamp } from "./order.js";

/** The app id of the checklist. */
export const CHECKLIST_APP_ID = "checklist";
/** The longest item text, in characters. */
export const MAX_ITEM_LEN = 200;
/** The longest item id, in characters. */
export const MAX_ITEM_ID_LEN = 64;

/** An event of the checklist. */
export type ChecklistEvent =
  | { t: "add"; c: number; id: string; text: string }
  | { t: "check"; c: number; id: string; done: boolean }
  | { t: "remove"; c: number; id: string };

/** The checklist's event in `json`, or undefined if it is not one (then it is ignored). */
export function parseChecklistEvent(json: Json): ChecklistEvent | undefined {
  if (typeof json !== "object" || json === null || Array.isArray(json)) return undefined;
  const c = json["c"];
  const id = json["id"];
  if (!isClock(c) || !isText(id, MAX_ITEM_ID_LEN)) return undefined;
  switch (json["t"]) {
    case "add": {
      const text = json["text"];
      return isText(text, MAX_ITEM_LEN) ? { t: "add", c, id, text } : undefined;
    }
    case "check": {
      const done = json["done"];
      return typeof done === "boolean" ? { t: "check", c, id, done } : undefined;
    }
    case "remove":
      return { t: "remove", c, id };
    default:
      return undefined;
  }
}

/** One item as shown. */
export interface ChecklistItem {
  /** The item's id. */
  id: string;
  /** Its text. */
  text: string;
  /** Whether it is checked. */
  done: boolean;
  /** Who added it. */
  addedBy: string;
  /** Who checked or unchecked it last, if anyone. */
  doneBy?: string;
}

interface Add extends Stamp {
  text: string;
}

interface Done extends Stamp {
  done: boolean;
}

/** One member's copy of a checklist: apply every event, in any order, any number of times. */
export class ChecklistState {
  /** The clock for this member's next event. */
  readonly clock = new LamportClock();
  private readonly adds = new Map<string, Add>();
  private readonly dones = new Map<string, Done>();
  private readonly removed = new Set<string>();

  /** Merges one event by `from`; returns false (and changes nothing) if `update` is not a checklist event. */
  apply(from: string, update: Json): boolean {
    const event = parseChecklistEvent(update);
    if (!event) return false;
    this.clock.observe(event.c);
    const stamp = { c: event.c, from };
    switch (event.t) {
      case "add": {
        const old = this.adds.get(event.id);
        if (!old || compareStamps(stamp, old) < 0) this.adds.set(event.id, { ...stamp, text: event.text });
        return true;
      }
      case "check": {
        const old = this.dones.get(event.id);
        const order = old ? compareStamps(stamp, old) : 1;
        if (order > 0 || (order === 0 && old && event.done && !old.done)) this.dones.set(event.id, { ...stamp, done: event.done });
        return true;
      }
      case "remove":
        this.removed.add(event.id);
        return true;
    }
  }

  /** The items every member who applied the same events sees, in (clock, author, id) order of their adds. */
  view(): ChecklistItem[] {
    const items: Array<ChecklistItem & { stamp: Stamp }> = [];
    for (const [id, add] of this.adds) {
      if (this.removed.has(id)) continue;
      const done = this.dones.get(id);
      const item: ChecklistItem & { stamp: Stamp } = { id, text: add.text, done: done?.done ?? false, addedBy: add.from, stamp: add };
      if (done) item.doneBy = done.from;
      items.push(item);
    }
    items.sort((a, b) => compareStamps(a.stamp, b.stamp) || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    return items.map(({ stamp: _stamp, ...item }) => item);
  }

  /** An add of a new item with id `id` (draw it at random: 16 random bytes in hex). */
  add(id: string, text: string): ChecklistEvent {
    return { t: "add", c: this.clock.next(), id, text };
  }

  /** Checks (`done` true) or unchecks item `id`. */
  check(id: string, done: boolean): ChecklistEvent {
    return { t: "check", c: this.clock.next(), id, done };
  }

  /** Removes item `id` for good. */
  remove(id: string): ChecklistEvent {
    return { t: "remove", c: this.clock.next(), id };
  }
}

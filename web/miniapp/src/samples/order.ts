/**
 * The order both sample apps resolve conflicts by (SPEC.md §11.9): a Lamport
 * clock `c` per event, ties broken by the author's username, so "later" is
 * a total order every member computes alike whatever order events arrive in.
 */

/** An event's position: its Lamport clock and author. */
export interface Stamp {
  /** The Lamport clock (an integer ≥ 1). */
  c: number;
  /** The author's username. */
  from: string;
}

/** Negative if `a` is before `b`, positive if after, 0 if the same stamp. */
export function compareStamps(a: Stamp, b: Stamp): number {
  if (a.c !== b.c) return a.c < b.c ? -1 : 1;
  if (a.from === b.from) return 0;
  return a.from < b.from ? -1 : 1;
}

/** A Lamport clock: `observe` every received clock, `next` for each own event. */
export class LamportClock {
  private value = 0;

  /** The largest clock seen. */
  get current(): number {
    return this.value;
  }

  /** Takes a received event's clock into account. */
  observe(c: number): void {
    if (c > this.value) this.value = c;
  }

  /** The clock of a new own event: one more than anything seen. */
  next(): number {
    return this.value + 1;
  }
}

/** True if `c` is a valid clock: a safe integer ≥ 1. */
export function isClock(c: unknown): c is number {
  return typeof c === "number" && Number.isSafeInteger(c) && c >= 1;
}

/** True if `s` is a string of 1..=`max` characters. */
export function isText(s: unknown, max: number): s is string {
  return typeof s === "string" && s.length >= 1 && s.length <= max;
}

/**
 * The poll's state (SPEC.md §11.9, app id `"poll"`): pure, convergent. The
 * create with the lowest (clock, author) defines the question and options;
 * each member's vote is the one with the highest (clock, option) among
 * theirs — last writer wins per member, so concurrent votes of different
 * members never conflict, and two devices of one member agree too. The
 * author is the host's word (`from`), never a field of the event.
 */
import type { Json } from "../protocol.js";
import { compareStamps, isClock, isText, LamportClock, type Stamp } from "./order.js";

/** The app id of the poll. */
export const POLL_APP_ID = "poll";
/** The longest question, in characters. */
export const MAX_QUESTION_LEN = 200;
/** The longest option, in characters. */
export const MAX_OPTION_LEN = 100;
/** The fewest and most options. */
export const MIN_OPTIONS = 2;
/** The most options. */
export const MAX_OPTIONS = 10;

/** An event of the poll. */
export type PollEvent =
  | { t: "create"; c: number; question: string; options: string[] }
  | { t: "vote"; c: number; option: number | null };

/** The poll's event in `json`, or undefined if it is not one (then it is ignored). */
export function parsePollEvent(json: Json): PollEvent | undefined {
  if (typeof json !== "object" || json === null || Array.isArray(json)) return undefined;
  const c = json["c"];
  if (!isClock(c)) return undefined;
  if (json["t"] === "create") {
    const question = json["question"];
    const options = json["options"];
    if (!isText(question, MAX_QUESTION_LEN) || !Array.isArray(options) || options.length < MIN_OPTIONS || options.length > MAX_OPTIONS) return undefined;
    if (!options.every((o) => isText(o, MAX_OPTION_LEN))) return undefined;
    return { t: "create", c, question, options: options as string[] };
  }
  if (json["t"] === "vote") {
    const option = json["option"];
    if (option !== null && !(typeof option === "number" && Number.isSafeInteger(option) && option >= 0 && option < MAX_OPTIONS)) return undefined;
    return { t: "vote", c, option };
  }
  return undefined;
}

/** What the poll shows. */
export interface PollView {
  /** Undefined until a create arrived. */
  question?: string;
  /** The options (empty until a create arrived). */
  options: string[];
  /** Votes per option. */
  tallies: number[];
  /** Each member's current vote (an option index), members without one left out; sorted by username. */
  votes: Array<{ member: string; option: number }>;
  /** Who created the poll. */
  createdBy?: string;
}

interface Vote extends Stamp {
  option: number | null;
}

/** One member's copy of a poll: apply every event, in any order, any number of times. */
export class PollState {
  /** The clock for this member's next event. */
  readonly clock = new LamportClock();
  private create: (Stamp & { question: string; options: string[] }) | undefined;
  private readonly votes = new Map<string, Vote>();

  /** Merges one event by `from`; returns false (and changes nothing) if `update` is not a poll event. */
  apply(from: string, update: Json): boolean {
    const event = parsePollEvent(update);
    if (!event) return false;
    this.clock.observe(event.c);
    const stamp = { c: event.c, from };
    if (event.t === "create") {
      if (!this.create || compareStamps(stamp, this.create) < 0) this.create = { ...stamp, question: event.question, options: [...event.options] };
      return true;
    }
    const old = this.votes.get(from);
    const order = (v: Vote) => [v.c, v.option ?? -1] as const;
    const [oc, oo] = old ? order(old) : [0, -2];
    const [nc, no] = order({ ...stamp, option: event.option });
    if (!old || nc > oc || (nc === oc && no > oo)) this.votes.set(from, { ...stamp, option: event.option });
    return true;
  }

  /** The poll as every member who applied the same events sees it. */
  view(): PollView {
    const options = this.create ? [...this.create.options] : [];
    const tallies = options.map(() => 0);
    const votes: PollView["votes"] = [];
    for (const [member, vote] of [...this.votes.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
      if (vote.option === null || vote.option >= options.length) continue;
      tallies[vote.option]! += 1;
      votes.push({ member, option: vote.option });
    }
    const view: PollView = { options, tallies, votes };
    if (this.create) {
      view.question = this.create.question;
      view.createdBy = this.create.from;
    }
    return view;
  }

  /** The create event of a new poll (clock 1). */
  static create(question: string, options: string[]): PollEvent {
    return { t: "create", c: 1, question, options: [...options] };
  }

  /** This member's vote for `option` (or `null`: no vote), with the next clock. */
  vote(option: number | null): PollEvent {
    return { t: "vote", c: this.clock.next(), option };
  }
}

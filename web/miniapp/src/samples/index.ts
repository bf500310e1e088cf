/**
 * The sample miniapps' convergent state, without any DOM: the poll and the
 * shared checklist (SPEC.md §11.9), and the (clock, author) order they
 * resolve conflicts by. Their browser front ends are `poll_main.ts` and
 * `checklist_main.ts`.
 */
export * from "./order.js";
export * from "./poll.js";
export * from "./checklist.js";

/**
 * The poll's front end, bundled into one classic script for the sandboxed
 * frame: a form to start the poll, then one button per option and the
 * tallies. Every action is a proposal the host asks the user to confirm;
 * the view is the merged state of every event (`PollState`).
 */
import { connect } from "../app.js";
import type { BridgeError, Member } from "../protocol.js";
import { appRoot, h, render } from "./dom.js";
import { MAX_OPTIONS, MIN_OPTIONS, PollState } from "./poll.js";

const root = appRoot();
const state = new PollState();
let members: Member[] = [];
let self = "";
let note = "";

const bridge = connect({ onError: (e: BridgeError) => console.warn("miniapp bridge:", e.message) });

async function propose(update: Parameters<typeof bridge.propose>[0], summary: string): Promise<void> {
  note = "Waiting for your confirmation…";
  draw();
  try {
    const { sent } = await bridge.propose(update, summary);
    note = sent ? "" : "Not sent.";
  } catch (error) {
    note = `Not sent: ${(error as Error).message}`;
  }
  draw();
}

const nameOf = (username: string) => members.find((m) => m.username === username)?.displayName ?? username;

function draw(): void {
  const view = state.view();
  const status = h("p", { role: "status", class: "note", text: note });
  if (view.question === undefined) {
    const question = h("input", { id: "question", required: true, maxlength: "200" });
    const options = h("textarea", { id: "options", rows: "4", required: true });
    const submit = (event: Event) => {
      event.preventDefault();
      const list = options.value.split("\n").map((o) => o.trim()).filter((o) => o.length > 0);
      if (question.value.trim() === "" || list.length < MIN_OPTIONS || list.length > MAX_OPTIONS) {
        note = `A question and ${MIN_OPTIONS} to ${MAX_OPTIONS} options, one per line.`;
        draw();
        return;
      }
      void propose(PollState.create(question.value.trim(), list), `Start the poll “${question.value.trim()}”`);
    };
    render(
      root,
      h("h1", { text: "New poll" }),
      h(
        "form",
        // The frame is sandboxed without allow-forms: no form submission, a plain button.
        { "aria-label": "New poll", onsubmit: (event: Event) => event.preventDefault() },
        h("label", { for: "question", text: "Question" }),
        question,
        h("label", { for: "options", text: "Options (one per line)" }),
        options,
        h("button", { type: "button", text: "Start poll", onclick: submit }),
      ),
      status,
    );
    return;
  }
  const mine = view.votes.find((v) => v.member === self)?.option;
  const total = view.tallies.reduce((a, b) => a + b, 0);
  render(
    root,
    h("h1", { text: view.question }),
    h("p", { class: "byline", text: `Poll by ${nameOf(view.createdBy ?? "")} · ${total} ${total === 1 ? "vote" : "votes"}` }),
    h(
      "ul",
      { "aria-label": "Options" },
      ...view.options.map((option, i) => {
        const count = view.tallies[i] ?? 0;
        const voters = view.votes.filter((v) => v.option === i).map((v) => nameOf(v.member));
        return h(
          "li",
          {},
          h("button", {
            type: "button",
            "aria-pressed": mine === i ? "true" : "false",
            text: `Vote for ${option}`,
            onclick: () => void propose(state.vote(i), `Vote for “${option}”`),
          }),
          h("span", { class: "tally", text: `${option}: ${count} ${count === 1 ? "vote" : "votes"}` }),
          h("span", { class: "voters", text: voters.join(", ") }),
        );
      }),
    ),
    mine !== undefined ? h("button", { type: "button", class: "secondary", text: "Withdraw my vote", onclick: () => void propose(state.vote(null), "Withdraw my vote") }) : null,
    status,
  );
}

bridge.onUpdate(({ from, update }) => {
  state.apply(from, update);
  draw();
});
void (async () => {
  members = await bridge.getMembers();
  const initial = await bridge.getState();
  self = initial.self;
  for (const u of initial.updates) state.apply(u.from, u.update);
  draw();
})();

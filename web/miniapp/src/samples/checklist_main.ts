/**
 * The shared checklist's front end, bundled into one classic script for the
 * sandboxed frame: add items, check, uncheck and remove them. Every action
 * is a proposal the host asks the user to confirm; the view is the merged
 * state of every event (`ChecklistState`).
 */
import { connect } from "../app.js";
import type { BridgeError, Member } from "../protocol.js";
import { ChecklistState, MAX_ITEM_LEN } from "./checklist.js";
import { appRoot, h, randomId, render } from "./dom.js";

const root = appRoot();
const state = new ChecklistState();
let members: Member[] = [];
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
  const items = state.view();
  // The frame is sandboxed without allow-forms: Enter and the button add, no form submission.
  const input = h("input", { id: "new-item", maxlength: String(MAX_ITEM_LEN), required: true, onkeydown: (event: Event) => (event as KeyboardEvent).key === "Enter" && submit(event) });
  const submit = (event: Event) => {
    event.preventDefault();
    const text = input.value.trim();
    if (text === "") return;
    void propose(state.add(randomId(), text), `Add “${text}” to the checklist`);
  };
  render(
    root,
    h("h1", { text: "Checklist" }),
    h(
      "form",
      { "aria-label": "Add an item", onsubmit: (event: Event) => event.preventDefault() },
      h("label", { for: "new-item", text: "New item" }),
      input,
      h("button", { type: "button", text: "Add", onclick: submit }),
    ),
    items.length === 0
      ? h("p", { class: "note", text: "Nothing on the list yet." })
      : h(
          "ul",
          { "aria-label": "Items" },
          ...items.map((item) => {
            const id = `item-${item.id}`;
            const box = h("input", {
              type: "checkbox",
              id,
              checked: item.done,
              onchange: (event: Event) => {
                const done = (event.target as HTMLInputElement).checked;
                (event.target as HTMLInputElement).checked = item.done;
                void propose(state.check(item.id, done), `${done ? "Check" : "Uncheck"} “${item.text}”`);
              },
            });
            return h(
              "li",
              { class: item.done ? "done" : "" },
              box,
              h("label", { for: id, text: item.text }),
              h("span", { class: "voters", text: item.doneBy ? `${item.done ? "checked" : "unchecked"} by ${nameOf(item.doneBy)}` : `added by ${nameOf(item.addedBy)}` }),
              h("button", { type: "button", class: "secondary", "aria-label": `Remove ${item.text}`, text: "Remove", onclick: () => void propose(state.remove(item.id), `Remove “${item.text}”`) }),
            );
          }),
        ),
    h("p", { role: "status", class: "note", text: note }),
  );
}

bridge.onUpdate(({ from, update }) => {
  state.apply(from, update);
  draw();
});
void (async () => {
  members = await bridge.getMembers();
  const initial = await bridge.getState();
  for (const u of initial.updates) state.apply(u.from, u.update);
  draw();
})();

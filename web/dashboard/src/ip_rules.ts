/**
 * The IP rules panel (SPEC.md §18.7): every rule in force, from the
 * server's settings and from the dashboard; an admin (role `admin`) denies
 * or allows an address or CIDR block and removes dashboard rules — each
 * change is audited and applies to new connections (once any allow rule
 * exists, only allowed addresses connect). Viewers see the rules only.
 */
import { api, ApiError, type IpRule, type Session } from "./api.js";
import { LiveTable } from "./table.js";

/** The panel's table, with the admin's controls when the role allows. */
export function ipRulesPanel(session: Session, changed: () => void): LiveTable<IpRule> {
  const canChange = session.role === "admin";
  const table: LiveTable<IpRule> = new LiveTable<IpRule>("IP rules", [
    { title: "Kind", value: (r) => r.kind },
    { title: "CIDR", value: (r) => r.cidr },
    { title: "Source", value: (r) => r.source },
    ...(canChange
      ? [
          {
            title: "Change",
            value: (r: IpRule) => (r.source === "dashboard" ? "remove" : ""),
            cell: (r: IpRule): Node => {
              if (r.source !== "dashboard") return document.createTextNode("settings");
              const remove = document.createElement("button");
              remove.type = "button";
              remove.textContent = "Remove";
              remove.setAttribute("aria-label", `Remove ${r.kind} rule ${r.cidr}`);
              remove.addEventListener("click", () => {
                api
                  .removeIpRule(r.cidr)
                  .then((answer) => {
                    table.set(answer.rules);
                    changed();
                  })
                  .catch((e: unknown) => (error.textContent = e instanceof ApiError ? e.message : "not removed"));
              });
              return remove;
            },
          },
        ]
      : []),
  ]);
  const error = document.createElement("p");
  error.className = "error";
  error.setAttribute("role", "alert");
  if (canChange) {
    const input = document.createElement("input");
    input.name = "cidr";
    input.placeholder = "203.0.113.7 or 10.0.0.0/8";
    input.required = true;
    const label = document.createElement("label");
    label.append("Address or block ", input);
    const deny = document.createElement("button");
    deny.type = "submit";
    deny.value = "deny";
    deny.textContent = "Deny";
    const allow = document.createElement("button");
    allow.type = "submit";
    allow.value = "allow";
    allow.textContent = "Allow";
    const note = document.createElement("p");
    note.className = "hint";
    note.textContent = "Once any allow rule exists, only allowed addresses can connect; a denied block stays denied.";
    const form = document.createElement("form");
    form.className = "deny";
    form.append(label, deny, allow, note, error);
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      error.textContent = "";
      const kind = event.submitter === allow ? "allow" : "deny";
      api
        .addIpRule(kind, input.value)
        .then((answer) => {
          input.value = "";
          table.set(answer.rules);
          changed();
        })
        .catch((e: unknown) => (error.textContent = e instanceof ApiError ? e.message : "not added"));
    });
    table.addControls(form);
  }
  return table;
}

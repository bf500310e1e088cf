/**
 * The IP rules panel (SPEC.md §18.7): every rule in force, from the
 * server's settings and from the dashboard; an admin (role `admin`) denies
 * an address or CIDR block and removes dashboard rules — each change is
 * audited and refuses new connections from that block. Viewers see the
 * rules only.
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
              remove.setAttribute("aria-label", `Remove deny rule ${r.cidr}`);
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
    label.append("Deny address or block ", input);
    const submit = document.createElement("button");
    submit.type = "submit";
    submit.textContent = "Deny";
    const form = document.createElement("form");
    form.className = "deny";
    form.append(label, submit, error);
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      error.textContent = "";
      api
        .denyIp(input.value)
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

/**
 * The Rate limits panel (SPEC.md §18.7 Rate limits): the per-minute rates
 * an operator may change live, with the server's setting, the rate in
 * force and the dashboard's override. An admin (role `admin`) sets a rate
 * (0 turns the limit off) or resets it to the setting; each change is
 * audited and reaches every node within 5 s. Viewers see the limits only.
 * Reloaded every 5 s (not in the pushed snapshot), like the suspensions.
 */
import { api, ApiError, type RateLimit, type Session } from "./api.js";
import { LiveTable } from "./table.js";

/** The panel: its table and a loader. */
export interface RateLimitsPanel {
  table: LiveTable<RateLimit>;
  load: () => Promise<void>;
}

/** The panel's table, with the admin's controls when the role allows. */
export function rateLimitsPanel(session: Session, changed: () => void): RateLimitsPanel {
  const canChange = session.role === "admin";
  const error = document.createElement("p");
  error.className = "error";
  error.setAttribute("role", "alert");
  const fail = (fallback: string) => (e: unknown) => {
    error.textContent = e instanceof ApiError ? e.message : fallback;
  };
  const table: LiveTable<RateLimit> = new LiveTable<RateLimit>("Rate limits", [
    { title: "Limit", value: (r) => r.name },
    { title: "What", value: (r) => r.description },
    { title: "Setting", value: (r) => r.config },
    { title: "In force", value: (r) => r.effective },
    { title: "Set by", value: (r) => (r.override ? r.override.updated_by : "settings") },
    ...(canChange
      ? [
          {
            title: "Change",
            value: (r: RateLimit) => (r.override ? "reset" : ""),
            cell: (r: RateLimit): Node => {
              if (!r.override) return document.createTextNode("");
              const reset = document.createElement("button");
              reset.type = "button";
              reset.textContent = "Reset";
              reset.setAttribute("aria-label", `Reset ${r.name} to the setting`);
              reset.addEventListener("click", () => {
                api
                  .resetRateLimit(r.name)
                  .then((answer) => {
                    table.set(answer.limits);
                    changed();
                  })
                  .catch(fail("not reset"));
              });
              return reset;
            },
          },
        ]
      : []),
  ]);
  const load = () =>
    api
      .rateLimits()
      .then((answer) => table.set(answer.limits))
      .catch(() => undefined);
  if (canChange) {
    const name = document.createElement("select");
    name.name = "limit";
    // The options' text would join the label's: name the select alone.
    name.setAttribute("aria-label", "Limit");
    const label = document.createElement("label");
    label.append("Limit ", name);
    const rate = document.createElement("input");
    rate.type = "number";
    rate.min = "0";
    rate.required = true;
    rate.name = "per_minute";
    const rateLabel = document.createElement("label");
    rateLabel.append("Per minute ", rate);
    const submit = document.createElement("button");
    submit.type = "submit";
    submit.textContent = "Set";
    const form = document.createElement("form");
    form.className = "deny";
    form.append(label, rateLabel, submit, error);
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      error.textContent = "";
      api
        .setRateLimit(name.value, Number(rate.value))
        .then((answer) => {
          rate.value = "";
          table.set(answer.limits);
          changed();
        })
        .catch(fail("not set"));
    });
    table.addControls(form);
    const fill = (limits: RateLimit[]) => {
      if (name.options.length > 0) return;
      for (const l of limits) name.append(new Option(l.name, l.name));
    };
    const loadAndFill = () =>
      api
        .rateLimits()
        .then((answer) => {
          fill(answer.limits);
          table.set(answer.limits);
        })
        .catch(() => undefined);
    return { table, load: loadAndFill };
  }
  return { table, load };
}

/**
 * The suspensions panel (SPEC.md §18.7 "Suspensions"): every suspended
 * account and device; an admin (role `admin`) suspends an account (all its
 * devices) or one device by its id, and lifts a suspension — each change is
 * audited, closes the target's connections on every node, and refuses its
 * logins. Viewers see the list only.
 */
import { api, ApiError, type Session, type Suspension } from "./api.js";
import { LiveTable } from "./table.js";

/** Describes a suspension in words (also the lift button's label). */
function describe(s: Suspension): string {
  return s.kind === "account" ? `account ${s.username}` : `device ${s.device_id} of ${s.username}`;
}

/** The panel's table, with the admin's controls when the role allows; `changed` runs after every change. */
export function suspensionsPanel(session: Session, changed: () => void): { table: LiveTable<Suspension>; load: () => Promise<void> } {
  const canChange = session.role === "admin";
  const error = document.createElement("p");
  error.className = "error";
  error.setAttribute("role", "alert");
  const fail = (e: unknown, what: string) => (error.textContent = e instanceof ApiError ? e.message : what);
  const table: LiveTable<Suspension> = new LiveTable<Suspension>("Suspensions", [
    { title: "Kind", value: (r) => r.kind },
    { title: "Account", value: (r) => r.username },
    { title: "Device", value: (r) => (r.device_id === undefined ? "all" : String(r.device_id)) },
    { title: "By", value: (r) => r.created_by },
    { title: "Since", value: (r) => new Date(r.created_at_ms).toISOString() },
    ...(canChange
      ? [
          {
            title: "Change",
            value: () => "lift",
            cell: (r: Suspension): Node => {
              const lift = document.createElement("button");
              lift.type = "button";
              lift.textContent = "Lift";
              lift.setAttribute("aria-label", `Lift the suspension of ${describe(r)}`);
              lift.addEventListener("click", () => {
                error.textContent = "";
                api
                  .unsuspend(r.kind, r.username, r.device_id)
                  .then((answer) => {
                    table.set(answer.suspensions);
                    changed();
                  })
                  .catch((e: unknown) => fail(e, "not lifted"));
              });
              return lift;
            },
          },
        ]
      : []),
  ]);
  if (canChange) {
    const username = document.createElement("input");
    username.name = "username";
    username.required = true;
    username.autocomplete = "off";
    const device = document.createElement("input");
    device.name = "device_id";
    device.inputMode = "numeric";
    device.pattern = "[0-9]+";
    device.placeholder = "all devices";
    const userLabel = document.createElement("label");
    userLabel.append("Suspend account ", username);
    const deviceLabel = document.createElement("label");
    deviceLabel.append("Device id ", device);
    const submit = document.createElement("button");
    submit.type = "submit";
    submit.textContent = "Suspend";
    const form = document.createElement("form");
    form.className = "deny";
    form.append(userLabel, deviceLabel, submit, error);
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      error.textContent = "";
      const id = device.value.trim();
      api
        .suspend(username.value.trim(), id === "" ? undefined : Number(id))
        .then((answer) => {
          username.value = "";
          device.value = "";
          table.set(answer.suspensions);
          changed();
        })
        .catch((e: unknown) => fail(e, "not suspended"));
    });
    table.addControls(form);
  }
  const load = () =>
    api
      .suspensions()
      .then((answer) => table.set(answer.suspensions))
      .catch((e: unknown) => void fail(e, "suspensions unavailable"));
  return { table, load };
}

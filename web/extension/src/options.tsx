/**
 * The options page: whether notifications may show the message text (off
 * by default: a notification then says only who wrote and how many
 * messages), the server this build talks to, and who is signed in.
 */
import { render } from "preact";
import { useEffect, useState } from "preact/hooks";

import { SERVER_ORIGIN, STORAGE } from "./config.js";

function Options() {
  const [showText, setShowText] = useState<boolean>();
  const [user, setUser] = useState<string>();
  const [saved, setSaved] = useState(false);
  useEffect(() => {
    void chrome.storage.local.get([STORAGE.showText, STORAGE.user]).then((stored) => {
      setShowText(stored[STORAGE.showText] === true);
      const name = stored[STORAGE.user];
      setUser(typeof name === "string" ? name : undefined);
    });
  }, []);
  const change = async (value: boolean) => {
    setShowText(value);
    setSaved(false);
    await chrome.storage.local.set({ [STORAGE.showText]: value });
    setSaved(true);
  };
  return (
    <main class="options">
      <h1>Microbot options</h1>
      <section aria-label="Notifications">
        <h2>Notifications</h2>
        <label class="check">
          <input type="checkbox" checked={showText === true} disabled={showText === undefined} onChange={(e) => void change((e.currentTarget as HTMLInputElement).checked)} />
          Show message text in notifications
        </label>
        <p class="muted small">
          Off: a notification says who wrote and how many new messages there are, never what they say. Anyone who can see your screen can read notifications.
        </p>
        <p role="status" class="muted small">
          {saved ? "Saved." : ""}
        </p>
      </section>
      <section aria-label="Account">
        <h2>Account</h2>
        <p>
          Server: <strong>{SERVER_ORIGIN}</strong> (chosen when the extension was built; it is the only server it can reach)
        </p>
        <p>{user ? `Signed in as ${user}.` : "Not signed in: open the toolbar popup to sign in."}</p>
      </section>
    </main>
  );
}

render(<Options />, document.getElementById("root")!);

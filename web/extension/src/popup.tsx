/**
 * The toolbar popup: sign in (name, password, authenticator code: the
 * extension becomes a device of the account), the latest conversations with
 * their unread counts, a conversation to read and answer. Opening a
 * conversation marks it read, which clears the badge. All state lives in
 * the service worker; the popup renders the `View` it sends.
 */
import { render } from "preact";
import { useEffect, useMemo, useRef, useState } from "preact/hooks";

import type { ConversationView, MessageView, View } from "./protocol.js";
import { WorkerPort } from "./port.js";

const NET_LABEL = { online: "Online", connecting: "Connecting…", offline: "Offline" } as const;

function errorText(error: unknown): string {
  return error instanceof Error ? error.message : "Something went wrong. Please try again.";
}

function SignIn({ port, server }: { port: WorkerPort; server: string }) {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string>();
  const submit = async (event: Event) => {
    event.preventDefault();
    const form = new FormData(event.currentTarget as HTMLFormElement);
    setBusy(true);
    setError(undefined);
    try {
      await port.request({ kind: "signIn", username: String(form.get("username") ?? ""), password: String(form.get("password") ?? ""), code: String(form.get("code") ?? "") });
    } catch (e) {
      setError(errorText(e));
    } finally {
      setBusy(false);
    }
  };
  return (
    <main class="signin">
      <h1>Microbot</h1>
      <p class="muted">
        Sign in to <strong>{new URL(server).host}</strong>. This browser becomes a new device of your account.
      </p>
      <form aria-label="Sign in" onSubmit={(e) => void submit(e)}>
        <label>
          Name
          <input name="username" autocomplete="username" required />
        </label>
        <label>
          Password
          <input name="password" type="password" autocomplete="current-password" required />
        </label>
        <label>
          6-digit code
          <input name="code" inputMode="numeric" autocomplete="one-time-code" pattern="[0-9 ]{6,7}" required />
        </label>
        {error && (
          <p role="alert" class="error">
            {error}
          </p>
        )}
        <button type="submit" disabled={busy}>
          {busy ? "Signing in…" : "Sign in"}
        </button>
      </form>
      <p class="muted small">No account yet? Create one in the web app or with the CLI, then sign in here.</p>
    </main>
  );
}

function messageLabel(m: MessageView): string {
  const author = m.mine ? "You" : m.from;
  if (m.deleted) return `${author}: message deleted`;
  if (m.fileName) return `${author}: file ${m.fileName}`;
  return `${author}: ${m.text}`;
}

const STATUS_LABEL = { queued: "Waiting to send", sent: "Sent", read: "Read" } as const;

function Message({ m, group }: { m: MessageView; group: boolean }) {
  if (m.event) return <li class="event">{m.text}</li>;
  return (
    <li class={m.mine ? "mine" : "theirs"} aria-label={messageLabel(m)}>
      {group && !m.mine && <span class="author">{m.from}</span>}
      <span class={m.deleted ? "body deleted" : "body"}>{m.deleted ? "message deleted" : m.fileName ? `📎 ${m.fileName}` : m.text}</span>
      <span class="meta">
        {new Date(m.sentAtMs).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })}
        {m.edited && !m.deleted && " · edited"}
        {m.mine && m.status && ` · ${STATUS_LABEL[m.status]}`}
      </span>
    </li>
  );
}

function Chat({ port, conv, onBack }: { port: WorkerPort; conv: ConversationView; onBack: () => void }) {
  const [text, setText] = useState("");
  const [error, setError] = useState<string>();
  const log = useRef<HTMLOListElement>(null);
  // Reading it here marks it read (and clears the badge), also for what arrives while it is open.
  useEffect(() => {
    if (conv.unread > 0 && document.visibilityState === "visible") void port.request({ kind: "read", peer: conv.key }).catch(() => undefined);
  }, [conv.key, conv.unread, port]);
  useEffect(() => {
    log.current?.lastElementChild?.scrollIntoView({ block: "end" });
  }, [conv.messages.length]);
  const send = async () => {
    const value = text.trim();
    if (!value) return;
    setText("");
    setError(undefined);
    try {
      await port.request({ kind: "send", peer: conv.key, text: value });
    } catch (e) {
      setError(errorText(e));
      setText(value);
    }
  };
  return (
    <section class="chat" aria-label={`Chat with ${conv.title}`}>
      <header>
        <button type="button" class="link" onClick={onBack}>
          Back
        </button>
        <h2>{conv.title}</h2>
      </header>
      <ol class="messages" role="log" aria-label="Messages" ref={log}>
        {conv.messages.map((m) => (
          <Message key={m.id} m={m} group={conv.group} />
        ))}
      </ol>
      {error && (
        <p role="alert" class="error">
          {error}
        </p>
      )}
      {conv.canWrite ? (
        <form
          class="composer"
          onSubmit={(e) => {
            e.preventDefault();
            void send();
          }}
        >
          <label class="visually-hidden" for="composer">
            Message
          </label>
          <textarea
            id="composer"
            rows={2}
            value={text}
            placeholder="Write a message"
            onInput={(e) => setText((e.currentTarget as HTMLTextAreaElement).value)}
            onKeyDown={(e) => {
              if (e.key === "Enter" && !e.shiftKey) {
                e.preventDefault();
                void send();
              }
              if (e.key === "Escape") onBack();
            }}
          />
          <button type="submit">Send</button>
        </form>
      ) : (
        <p class="muted">You are no longer in this group.</p>
      )}
    </section>
  );
}

function Conversations({ port, view, onOpen }: { port: WorkerPort; view: Extract<View, { signedIn: true }>; onOpen: (key: string) => void }) {
  const [error, setError] = useState<string>();
  const [busy, setBusy] = useState(false);
  const start = async (event: Event) => {
    event.preventDefault();
    const input = (event.currentTarget as HTMLFormElement).elements.namedItem("contact") as HTMLInputElement;
    const name = input.value.trim();
    if (!name) return;
    setBusy(true);
    setError(undefined);
    try {
      await port.request({ kind: "addContact", name });
      input.value = "";
      onOpen(name);
    } catch (e) {
      setError(errorText(e));
    } finally {
      setBusy(false);
    }
  };
  return (
    <>
      <nav aria-label="Conversations">
        {view.conversations.length === 0 && <p class="muted">No conversations yet.</p>}
        <ul>
          {view.conversations.map((conv) => {
            const last = conv.messages.filter((m) => !m.event).at(-1);
            return (
              <li key={conv.key}>
                <button type="button" class="conversation" aria-label={conv.unread ? `${conv.title}, ${conv.unread} unread` : conv.title} onClick={() => onOpen(conv.key)}>
                  <span class="title">{conv.title}</span>
                  {conv.unread > 0 && <span class="unread">{conv.unread}</span>}
                  {last && <span class="preview">{last.deleted ? "message deleted" : last.fileName ? `📎 ${last.fileName}` : `${last.mine ? "You: " : ""}${last.text}`}</span>}
                </button>
              </li>
            );
          })}
        </ul>
      </nav>
      <form class="start" onSubmit={(e) => void start(e)}>
        <label class="visually-hidden" for="contact">
          Contact name
        </label>
        <input id="contact" name="contact" placeholder="Start a chat with…" autocomplete="off" />
        <button type="submit" disabled={busy}>
          Start chat
        </button>
      </form>
      {error && (
        <p role="alert" class="error">
          {error}
        </p>
      )}
    </>
  );
}

function Popup() {
  const [view, setView] = useState<View>();
  const [openKey, setOpenKey] = useState<string>();
  const port = useMemo(() => new WorkerPort(setView), []);
  if (!view) return <p class="muted boot">Opening…</p>;
  if (!view.signedIn) return <SignIn port={port} server={view.server} />;
  const conv = openKey ? view.conversations.find((c) => c.key === openKey) : undefined;
  return (
    <main>
      <header class="top">
        <h1>Microbot</h1>
        <span role="status" aria-label="Connection" class={`net ${view.net}`} title={view.netProblem}>
          {NET_LABEL[view.net]}
          {view.pending > 0 && ` · ${view.pending} waiting to send`}
        </span>
      </header>
      {conv ? <Chat port={port} conv={conv} onBack={() => setOpenKey(undefined)} /> : <Conversations port={port} view={view} onOpen={setOpenKey} />}
      <footer>
        <span class="muted small">Signed in as {view.username}</span>
        <button type="button" class="link" onClick={() => void chrome.runtime.openOptionsPage()}>
          Options
        </button>
        <button type="button" class="link danger" onClick={() => void port.request({ kind: "signOut" }).catch(() => undefined)}>
          Sign out
        </button>
      </footer>
    </main>
  );
}

render(<Popup />, document.getElementById("root")!);

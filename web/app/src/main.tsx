/**
 * The Microbot web app: welcome (register / log in / link to an existing
 * account), then chats. Every
 * network action shows that it is under way and ends in a result or an
 * error in words; the connection state is always visible.
 */
import { render } from "preact";
import { useEffect, useRef, useState } from "preact/hooks";

import { ChatView } from "./chat.js";
import type { client } from "@microbot/sdk";

import { Engine, finishLinking, finishRegistration, logIn, resume, startLinking, startRegistration, type PendingRegistration } from "./engine.js";
import { describeError } from "./errors.js";
import { ErrorLine, Qr, useAction } from "./ui.js";

function Welcome({ onEngine }: { onEngine: (engine: Engine) => void }) {
  const [tab, setTab] = useState<"register" | "login" | "link">("register");
  const [pending, setPending] = useState<PendingRegistration | undefined>();
  const [recovery, setRecovery] = useState<{ codes: string[]; engine: Engine } | undefined>();
  if (recovery) return <RecoveryCodes codes={recovery.codes} onDone={() => onEngine(recovery.engine)} />;
  if (pending) return <ConfirmTotp pending={pending} onBack={() => setPending(undefined)} onDone={(engine) => setRecovery({ codes: pending.recoveryCodes, engine })} />;
  return (
    <main class="welcome">
      <h1>Microbot</h1>
      <p class="lead">End-to-end encrypted messages. Your keys stay in this browser.</p>
      <div role="tablist" aria-label="Account" class="tabs">
        <button role="tab" aria-selected={tab === "register"} onClick={() => setTab("register")}>
          Create account
        </button>
        <button role="tab" aria-selected={tab === "login"} onClick={() => setTab("login")}>
          Log in
        </button>
        <button role="tab" aria-selected={tab === "link"} onClick={() => setTab("link")}>
          Link to an existing account
        </button>
      </div>
      {tab === "register" ? <RegisterForm onPending={setPending} /> : tab === "login" ? <LoginForm onEngine={onEngine} /> : <LinkToAccount onEngine={onEngine} />}
    </main>
  );
}

function RegisterForm({ onPending }: { onPending: (p: PendingRegistration) => void }) {
  const [name, setName] = useState("");
  const [password, setPassword] = useState("");
  const [busy, error, run] = useAction();
  const submit = (e: Event) => {
    e.preventDefault();
    void run(async () => onPending(await startRegistration(name.trim(), password)));
  };
  return (
    <form onSubmit={submit} aria-label="Create account" aria-busy={busy}>
      <label>
        Name
        <input name="username" autoComplete="username" required maxLength={32} value={name} onInput={(e) => setName(e.currentTarget.value)} />
      </label>
      <label>
        Password
        <input name="password" type="password" autoComplete="new-password" required minLength={8} value={password} onInput={(e) => setPassword(e.currentTarget.value)} />
      </label>
      <button type="submit" disabled={busy}>
        {busy ? "Creating account…" : "Create account"}
      </button>
      <ErrorLine error={error} />
    </form>
  );
}

function ConfirmTotp({ pending, onBack, onDone }: { pending: PendingRegistration; onBack: () => void; onDone: (engine: Engine) => void }) {
  const [code, setCode] = useState("");
  const [busy, error, run] = useAction();
  const submit = (e: Event) => {
    e.preventDefault();
    void run(async () => onDone(await finishRegistration(pending, code.trim())));
  };
  return (
    <main class="welcome">
      <h1>Set up your authenticator</h1>
      <p>Scan this code with an authenticator app (or type the secret), then enter the 6-digit code it shows.</p>
      <Qr text={pending.otpauthUri} label="Authenticator QR code" />
      <p>
        Secret: <code aria-label="Authenticator secret">{pending.secretBase32}</code>
      </p>
      <form onSubmit={submit} aria-label="Confirm code" aria-busy={busy}>
        <label>
          6-digit code
          <input name="code" inputMode="numeric" autoComplete="one-time-code" pattern="[0-9]{6}" required value={code} onInput={(e) => setCode(e.currentTarget.value)} />
        </label>
        <button type="submit" disabled={busy}>
          {busy ? "Confirming…" : "Confirm"}
        </button>
        <button type="button" class="secondary" onClick={onBack} disabled={busy}>
          Back
        </button>
        <ErrorLine error={error} />
      </form>
    </main>
  );
}

function RecoveryCodes({ codes, onDone }: { codes: string[]; onDone: () => void }) {
  const [saved, setSaved] = useState(false);
  return (
    <main class="welcome">
      <h1>Your recovery codes</h1>
      <p class="warning" role="alert">
        Write these codes down and keep them somewhere safe. They are shown only once. Each one lets you into your account if you lose your authenticator.
      </p>
      <ol class="codes" aria-label="Recovery codes">
        {codes.map((code) => (
          <li key={code}>
            <code>{code}</code>
          </li>
        ))}
      </ol>
      <label class="check">
        <input type="checkbox" checked={saved} onChange={(e) => setSaved(e.currentTarget.checked)} /> I have saved my recovery codes
      </label>
      <button disabled={!saved} onClick={onDone}>
        Continue to chats
      </button>
    </main>
  );
}

function LoginForm({ onEngine }: { onEngine: (engine: Engine) => void }) {
  const [name, setName] = useState("");
  const [password, setPassword] = useState("");
  const [code, setCode] = useState("");
  const [busy, error, run] = useAction();
  const submit = (e: Event) => {
    e.preventDefault();
    void run(async () => onEngine(await logIn(name.trim(), password, code.trim())));
  };
  return (
    <form onSubmit={submit} aria-label="Log in" aria-busy={busy}>
      <label>
        Name
        <input name="username" autoComplete="username" required value={name} onInput={(e) => setName(e.currentTarget.value)} />
      </label>
      <label>
        Password
        <input name="password" type="password" autoComplete="current-password" required value={password} onInput={(e) => setPassword(e.currentTarget.value)} />
      </label>
      <label>
        6-digit code
        <input name="code" inputMode="numeric" autoComplete="one-time-code" pattern="[0-9]{6}" required value={code} onInput={(e) => setCode(e.currentTarget.value)} />
      </label>
      <p class="hint">Logging in here adds this browser as a new device; your contacts will see a new safety number.</p>
      <button type="submit" disabled={busy}>
        {busy ? "Logging in…" : "Log in"}
      </button>
      <ErrorLine error={error} />
    </form>
  );
}

type LinkPhase =
  | { step: "starting" }
  | { step: "waiting"; request: client.LinkRequest; reconnecting: boolean }
  | { step: "received"; provisioned: client.Provisioned }
  | { step: "failed"; error: string };

const plural = (n: number, one: string, many = `${one}s`) => `${n} ${n === 1 ? one : many}`;

/**
 * This browser becomes another device of an account (SPEC §12.14): it shows
 * a code (text and QR) for a signed-in device, waits for the account, then
 * enrols with the password and a code.
 */
function LinkToAccount({ onEngine }: { onEngine: (engine: Engine) => void }) {
  const [attempt, setAttempt] = useState(0);
  const [phase, setPhase] = useState<LinkPhase>({ step: "starting" });
  const [password, setPassword] = useState("");
  const [code, setCode] = useState("");
  const [busy, error, run] = useAction();
  useEffect(() => {
    let live = true;
    let request: client.LinkRequest | undefined;
    const controller = new AbortController();
    setPhase({ step: "starting" });
    startLinking()
      .then((r) => {
        request = r;
        if (!live) return undefined;
        setPhase({ step: "waiting", request: r, reconnecting: false });
        return r.wait({ signal: controller.signal, onState: (s) => live && s !== "received" && setPhase({ step: "waiting", request: r, reconnecting: s === "reconnecting" }) });
      })
      .then((provisioned) => {
        if (provisioned && live) setPhase({ step: "received", provisioned });
        else provisioned?.wipe();
      })
      .catch((e: unknown) => {
        console.warn(e);
        if (live) setPhase({ step: "failed", error: describeError(e) });
      });
    return () => {
      live = false;
      controller.abort();
      request?.dispose();
    };
  }, [attempt]);
  const submit = (e: Event) => {
    e.preventDefault();
    if (phase.step !== "received") return;
    void run(async () => onEngine(await finishLinking(phase.provisioned, password, code)));
  };
  let status: string;
  switch (phase.step) {
    case "starting":
      status = "Getting a code from the server…";
      break;
    case "waiting":
      status = phase.reconnecting ? "Reconnecting to the server… (the code stays valid)" : "Waiting for your other device…";
      break;
    case "received": {
      const p = phase.provisioned;
      status = busy
        ? "Enrolling this browser…"
        : `Received the account ${p.username}: ${plural(p.contacts.length, "contact")}, ${plural(p.groups.length, "group")}, ${plural(p.history.length, "message")} of history. Enter its password and a code to finish.`;
      break;
    }
    default:
      status = "Linking failed.";
  }
  return (
    <section class="link" aria-label="Link to an existing account">
      <p>
        On a device where you are signed in, choose <strong>Link a device</strong> and type this code (or scan it). It works for 10 minutes, once.
      </p>
      {phase.step === "waiting" ? (
        <>
          <p class="link-code">
            <code aria-label="Linking code">
              {phase.request.text.split("-").map((group, i, all) => (
                <span key={i}>{i < all.length - 1 ? `${group}-` : group}</span>
              ))}
            </code>
          </p>
          <Qr text={phase.request.text} label="Linking QR code" />
        </>
      ) : null}
      <p class="status" role="status" aria-label="Link status">
        {status}
      </p>
      {phase.step === "failed" ? (
        <>
          <ErrorLine error={phase.error} />
          <button onClick={() => setAttempt((n) => n + 1)}>Start again</button>
        </>
      ) : null}
      {phase.step === "received" ? (
        <form onSubmit={submit} aria-label="Finish linking" aria-busy={busy}>
          <label>
            Password
            <input name="password" type="password" autoComplete="current-password" required value={password} onInput={(e) => setPassword(e.currentTarget.value)} />
          </label>
          <label>
            Code from your authenticator (or a recovery code)
            <input name="code" autoComplete="one-time-code" required value={code} onInput={(e) => setCode(e.currentTarget.value)} />
          </label>
          <button type="submit" disabled={busy}>
            {busy ? "Enrolling…" : "Link this browser"}
          </button>
          <ErrorLine error={error} />
        </form>
      ) : null}
    </section>
  );
}

function App() {
  const [engine, setEngine] = useState<Engine | undefined>();
  const [loading, setLoading] = useState(true);
  const started = useRef(false);
  useEffect(() => {
    if (started.current) return;
    started.current = true;
    resume()
      .then((e) => setEngine(e))
      .catch((e) => console.warn("no stored device", e))
      .finally(() => setLoading(false));
  }, []);
  if (loading) return <p class="boot">Opening your keys…</p>;
  if (!engine) return <Welcome onEngine={setEngine} />;
  return <ChatView engine={engine} />;
}

// The installable app: the service worker keeps the shell for offline starts
// (secure contexts only: HTTPS with a trusted certificate, or loopback).
if ("serviceWorker" in navigator && window.isSecureContext) {
  navigator.serviceWorker.register("/sw.js").catch((e) => console.warn("service worker not registered", e));
}

render(<App />, document.getElementById("app")!);

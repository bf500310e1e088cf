/**
 * The signed-in view: connection state, contacts, one conversation with
 * reactions, replies, edits, deletes, read receipts and "typing…", the
 * members of the chat and the safety number.
 */
import { useEffect, useRef, useState } from "preact/hooks";

import { CallButtons, CallPanel, CallSettings } from "./callview.js";
import type { client } from "@microbot/sdk";

import type { ChatMessage, Engine, EngineState, LinkPreview } from "./engine.js";
import { AppsMenu, MiniappCard, MiniappPrompt } from "./miniapps_view.js";
import { describeError } from "./errors.js";
import { ErrorLine, Qr, useAction } from "./ui.js";

const EMOJI = ["👍", "❤️", "😂", "😮"];

function useEngine(engine: Engine): EngineState {
  const [state, setState] = useState(engine.state);
  useEffect(() => engine.subscribe(() => setState(engine.state)), [engine]);
  return state;
}

function ConnectionBadge({ state }: { state: EngineState }) {
  const text = state.net === "online" ? "Online" : state.net === "connecting" ? "Connecting…" : "Offline — reconnecting…";
  return (
    <div class={`net net-${state.net}`} role="status" aria-label="Connection">
      <span class="dot" aria-hidden="true" />
      {text}
      {state.pending > 0 ? <span class="pending"> · {state.pending} waiting to send</span> : null}
      {state.net === "offline" && state.netProblem ? <span class="problem"> {state.netProblem}</span> : null}
    </div>
  );
}

function AddContact({ engine, onAdded }: { engine: Engine; onAdded: (name: string) => void }) {
  const [name, setName] = useState("");
  const [busy, error, run] = useAction();
  const submit = (e: Event) => {
    e.preventDefault();
    const who = name.trim();
    if (!who) return;
    void run(async () => {
      await engine.addContact(who);
      setName("");
      onAdded(who);
    });
  };
  return (
    <form class="add" onSubmit={submit} aria-label="Add contact" aria-busy={busy}>
      <label>
        Contact name
        <input name="contact" required value={name} onInput={(e) => setName(e.currentTarget.value)} />
      </label>
      <button type="submit" disabled={busy}>
        {busy ? "Adding…" : "Add contact"}
      </button>
      <ErrorLine error={error} />
    </form>
  );
}

function NewGroup({ engine, onCreated }: { engine: Engine; onCreated: (key: string) => void }) {
  const [name, setName] = useState("");
  const [members, setMembers] = useState("");
  const [busy, error, run] = useAction();
  const submit = (e: Event) => {
    e.preventDefault();
    const names = members.split(",").map((m) => m.trim()).filter(Boolean);
    void run(async () => {
      const key = await engine.createGroup(name.trim(), names);
      setName("");
      setMembers("");
      onCreated(key);
    });
  };
  return (
    <details class="new-group">
      <summary>New group</summary>
      <form onSubmit={submit} aria-label="New group" aria-busy={busy}>
        <label>
          Group name
          <input required value={name} onInput={(e) => setName(e.currentTarget.value)} />
        </label>
        <label>
          Members (names, comma-separated)
          <input required value={members} onInput={(e) => setMembers(e.currentTarget.value)} />
        </label>
        <button type="submit" disabled={busy}>
          {busy ? "Creating group…" : "Create group"}
        </button>
        <ErrorLine error={error} />
      </form>
    </details>
  );
}

function SafetyNumberDialog({ engine, peer, onClose }: { engine: Engine; peer: string; onClose: () => void }) {
  const number = engine.safetyNumber(peer);
  const ref = useRef<HTMLDivElement>(null);
  useEffect(() => {
    ref.current?.querySelector("button")?.focus();
    const onKey = (e: KeyboardEvent) => {
      if (e.key === "Escape") onClose();
    };
    window.addEventListener("keydown", onKey);
    return () => window.removeEventListener("keydown", onKey);
  }, [onClose]);
  const payload = number ? Array.from(number.qrPayload(), (b) => b.toString(16).padStart(2, "0")).join("") : "";
  return (
    <div class="backdrop">
      <div class="dialog" role="dialog" aria-modal="true" aria-label={`Safety number with ${peer}`} ref={ref}>
        <h2>Safety number with {peer}</h2>
        {number ? (
          <>
            <p>Compare these digits with {peer} in person or on a call, or scan each other's code. If they match, nobody is in between.</p>
            <p class="digits" aria-label="Safety number digits">
              {number.display()}
            </p>
            <Qr text={payload} label="Safety number QR code" />
          </>
        ) : (
          <p>No safety number yet: send or receive a first message.</p>
        )}
        <button onClick={onClose}>Close</button>
      </div>
    </div>
  );
}

const count = (n: number, one: string, many = `${one}s`) => `${n} ${n === 1 ? one : many}`;

/** What a link sends, in words. */
function linkContents(p: LinkPreview): string {
  const parts = [`your account's identity key`, count(p.contacts, "contact"), count(p.groups, "group")];
  if (p.history > 0) parts.push(`${count(p.history, "recent message")} of history`);
  return `${parts.slice(0, -1).join(", ")} and ${parts.at(-1)!}`;
}

/** Gives this account to a new device showing a code (SPEC §12.14): type the code, agree to what is sent, then the result in words. */
function LinkDeviceDialog({ engine, onClose }: { engine: Engine; onClose: () => void }) {
  const [code, setCode] = useState("");
  const [withHistory, setWithHistory] = useState(false);
  const [preview, setPreview] = useState<LinkPreview | undefined>();
  const [result, setResult] = useState<client.LinkSummary | undefined>();
  const [busy, error, run, setError] = useAction();
  const ref = useRef<HTMLDivElement>(null);
  useEffect(() => {
    const onKey = (e: KeyboardEvent) => {
      if (e.key === "Escape") onClose();
    };
    window.addEventListener("keydown", onKey);
    return () => window.removeEventListener("keydown", onKey);
  }, [onClose]);
  useEffect(() => {
    ref.current?.querySelector<HTMLElement>("input, button[type=submit], button")?.focus();
  }, [preview, result]);
  const review = (e: Event) => {
    e.preventDefault();
    setError(undefined);
    try {
      engine.checkLinkCode(code);
    } catch (err) {
      setError(describeError(err));
      return;
    }
    setPreview(engine.linkPreview(withHistory));
  };
  const send = (e: Event) => {
    e.preventDefault();
    void run(async () => setResult(await engine.linkDevice(code, withHistory)));
  };
  return (
    <div class="backdrop">
      <div class="dialog" role="dialog" aria-modal="true" aria-label="Link a device" ref={ref}>
        <h2>Link a device</h2>
        {result ? (
          <>
            <p role="status" aria-label="Link result">
              Sent {linkContents(result)} to the new device. Finish there with your password and a code.
            </p>
            <button onClick={onClose}>Close</button>
          </>
        ) : preview ? (
          <form onSubmit={send} aria-label="Confirm link" aria-busy={busy}>
            <p>
              This sends {linkContents(preview)} to the device showing the code, end-to-end encrypted. Whoever holds that device can read your messages from now
              on: only continue if you read the code off your own new device.
            </p>
            {busy ? (
              <p role="status" aria-label="Link progress">
                Sending the account to the new device…
              </p>
            ) : null}
            <button type="submit" disabled={busy}>
              {busy ? "Sending…" : "Send the account"}
            </button>
            <button type="button" class="secondary" disabled={busy} onClick={() => setPreview(undefined)}>
              Back
            </button>
            <ErrorLine error={error} />
          </form>
        ) : (
          <form onSubmit={review} aria-label="Link code">
            <p>On the new device, choose “Link to an existing account”; it shows a code. Type or paste it here.</p>
            <label>
              Code from the new device
              <input name="link-code" autoComplete="off" spellcheck={false} required value={code} onInput={(e) => setCode(e.currentTarget.value)} />
            </label>
            <label class="check">
              <input type="checkbox" checked={withHistory} onChange={(e) => setWithHistory(e.currentTarget.checked)} /> Also send recent history
            </label>
            <button type="submit">Continue</button>
            <button type="button" class="secondary" onClick={onClose}>
              Cancel
            </button>
            <ErrorLine error={error} />
          </form>
        )}
      </div>
    </div>
  );
}

function size(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(0)} KiB`;
  return `${(bytes / 1048576).toFixed(1)} MiB`;
}

/** Saves `url` under `name` (the browser's download). */
function save(url: string, name: string): void {
  const a = document.createElement("a");
  a.href = url;
  a.download = name;
  a.click();
}

/** Images and videos up to this size load by themselves. */
const AUTO_LOAD_BYTES = 25 * 1024 * 1024;

function FileView({ message, engine }: { message: ChatMessage; engine: Engine }) {
  const file = message.file!;
  const [busy, error, run] = useAction();
  const media = file.type.startsWith("image/") ? "image" : file.type.startsWith("video/") ? "video" : undefined;
  useEffect(() => {
    if (media && !file.url && file.pointer && !message.mine && file.size <= AUTO_LOAD_BYTES) void run(async () => void (await engine.download(message)));
  }, [message.id]);
  const verb = message.mine && !file.pointer ? "Upload" : "Download";
  return (
    <div class="file">
      {file.url && media === "image" ? <img class="media" src={file.url} alt={file.name} /> : null}
      {file.url && media === "video" ? <video class="media" src={file.url} controls aria-label={file.name} /> : null}
      <p class="file-name">
        📎 {file.name} <span class="meta">({size(file.size)})</span>
      </p>
      {file.progress ? <progress aria-label={`${verb} of ${file.name}`} value={file.progress.done} max={file.progress.total} /> : null}
      {!file.progress && file.pointer && !file.url ? (
        <button class="link" disabled={busy} onClick={() => void run(async () => save(await engine.download(message), file.name))}>
          {busy ? `Downloading ${file.name}…` : `Download ${file.name}`}
        </button>
      ) : null}
      {file.url ? (
        <a href={file.url} download={file.name}>
          Save {file.name}
        </a>
      ) : null}
      <ErrorLine error={error} />
    </div>
  );
}

function MessageItem({ message, engine, peer, group, members, onReply, onEdit }: { message: ChatMessage; engine: Engine; peer: string; group: boolean; members: string[]; onReply: () => void; onEdit: () => void }) {
  const [busy, error, run] = useAction();
  if (message.miniapp) {
    return (
      <li class={`msg app ${message.mine ? "mine" : "theirs"}`} aria-label={`${message.mine ? "You" : message.from}: app ${message.miniapp.appId}`}>
        {group && !message.mine ? <p class="author">{message.from}</p> : null}
        <MiniappCard engine={engine} peer={peer} miniapp={message.miniapp} members={members} />
      </li>
    );
  }
  if (message.event) {
    return (
      <li class="event" aria-label={message.text}>
        {message.text}
      </li>
    );
  }
  const time = new Date(message.sentAtMs).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  const status = message.status === "read" ? "Read" : message.status === "sent" ? "Sent" : message.status === "queued" ? "Waiting to send" : undefined;
  return (
    <li class={`msg ${message.mine ? "mine" : "theirs"}`} aria-label={`${message.mine ? "You" : message.from}: ${message.deleted ? "message deleted" : message.file ? `file ${message.file.name}` : message.text}`}>
      {group && !message.mine ? <p class="author">{message.from}</p> : null}
      {message.replyTo ? <blockquote class="quote">↩ {message.replyTo.author}: {message.replyTo.snippet}</blockquote> : null}
      {message.file && !message.deleted ? <FileView message={message} engine={engine} /> : <p class="text">{message.deleted ? <em>This message was deleted.</em> : message.text}</p>}
      <div class="meta">
        <span>{time}</span>
        {message.edited && !message.deleted ? <span> · edited</span> : null}
        {status ? <span class="status"> · {status}</span> : null}
      </div>
      {Object.keys(message.reactions).length > 0 ? (
        <ul class="reactions" aria-label="Reactions">
          {Object.entries(message.reactions).map(([emoji, who]) => (
            <li key={emoji} title={who.join(", ")}>
              {emoji} {who.length}
            </li>
          ))}
        </ul>
      ) : null}
      {message.deleted ? null : (
        <div class="actions">
          {EMOJI.map((emoji) => (
            <button key={emoji} class="icon" aria-label={`React ${emoji}`} disabled={busy} onClick={() => void run(() => engine.react(peer, message, emoji))}>
              {emoji}
            </button>
          ))}
          <button class="link" onClick={onReply}>
            Reply
          </button>
          {message.mine ? (
            <>
              {message.file ? null : (
                <button class="link" onClick={onEdit}>
                  Edit
                </button>
              )}
              <button class="link danger" disabled={busy} onClick={() => void run(() => engine.remove(peer, message))}>
                Delete
              </button>
            </>
          ) : null}
        </div>
      )}
      <ErrorLine error={error} />
    </li>
  );
}

function GroupPanel({ engine, state, peer }: { engine: Engine; state: EngineState; peer: string }) {
  const group = state.conversations[peer]!.group!;
  const [add, setAdd] = useState("");
  const [name, setName] = useState("");
  const [busy, error, run] = useAction();
  const others = group.members.filter((m) => m !== state.username);
  return (
    <div class="group-panel" aria-busy={busy}>
      <ul class="members" aria-label="Members">
        {group.members.map((m) => (
          <li key={m}>
            {m === state.username ? `${m} (you)` : m}
            {m !== state.username && group.active ? (
              <button class="link danger" aria-label={`Remove ${m}`} disabled={busy} onClick={() => void run(() => engine.removeMember(peer, m))}>
                Remove
              </button>
            ) : null}
          </li>
        ))}
      </ul>
      {group.active ? (
        <>
          <form
            aria-label="Add member"
            onSubmit={(e) => {
              e.preventDefault();
              const who = add.trim();
              if (who) void run(async () => {
                await engine.addMembers(peer, [who]);
                setAdd("");
              });
            }}
          >
            <label>
              New member
              <input value={add} onInput={(e) => setAdd(e.currentTarget.value)} />
            </label>
            <button type="submit" disabled={busy}>
              Add member
            </button>
          </form>
          <form
            aria-label="Rename group"
            onSubmit={(e) => {
              e.preventDefault();
              const n = name.trim();
              if (n) void run(async () => {
                await engine.renameGroup(peer, n);
                setName("");
              });
            }}
          >
            <label>
              New group name
              <input value={name} onInput={(e) => setName(e.currentTarget.value)} />
            </label>
            <button type="submit" disabled={busy}>
              Rename
            </button>
          </form>
          <button class="secondary" disabled={busy} onClick={() => void run(() => engine.leaveGroup(peer))}>
            Leave group
          </button>
        </>
      ) : null}
      {busy ? <p class="hint">Updating the group…</p> : null}
      {others.length === 0 && group.active ? <p class="hint">Nobody else is in this group yet.</p> : null}
      <ErrorLine error={error} />
    </div>
  );
}

function ConversationView({ engine, state, peer, onBack }: { engine: Engine; state: EngineState; peer: string; onBack: () => void }) {
  const conv = state.conversations[peer];
  const [text, setText] = useState("");
  const [replyTo, setReplyTo] = useState<ChatMessage | undefined>();
  const [editing, setEditing] = useState<ChatMessage | undefined>();
  const [showSafety, setShowSafety] = useState(false);
  const [showMembers, setShowMembers] = useState(false);
  const [busy, error, run] = useAction();
  const input = useRef<HTMLTextAreaElement>(null);
  const list = useRef<HTMLOListElement>(null);
  const count = conv?.messages.length ?? 0;
  useEffect(() => {
    list.current?.lastElementChild?.scrollIntoView({ block: "end" });
    if (document.visibilityState === "visible") engine.markRead(peer);
  }, [count, peer, engine]);
  useEffect(() => {
    const onVisible = () => document.visibilityState === "visible" && engine.markRead(peer);
    document.addEventListener("visibilitychange", onVisible);
    return () => document.removeEventListener("visibilitychange", onVisible);
  }, [peer, engine]);
  if (!conv) return null;
  const group = conv.group;
  const title = group ? group.name : peer;
  const typing = conv.typingUntil > Date.now();
  const cancel = () => {
    setReplyTo(undefined);
    setEditing(undefined);
    setText("");
  };
  const send = () => {
    const body = text.trim();
    if (!body) return;
    const target = editing;
    const reply = replyTo;
    setText("");
    setReplyTo(undefined);
    setEditing(undefined);
    engine.typing(peer, false);
    void run(() => (target ? engine.edit(peer, target, body) : engine.sendText(peer, body, reply)));
  };
  const onKey = (e: KeyboardEvent) => {
    if (e.key === "Enter" && !e.shiftKey) {
      e.preventDefault();
      send();
    } else if (e.key === "Escape") {
      cancel();
    }
  };
  return (
    <section class="conversation" aria-label={`Chat with ${title}`}>
      <header>
        <button class="back link" onClick={onBack} aria-label="Back to chats">
          ←
        </button>
        <h2>{title}</h2>
        <button class="link" onClick={() => setShowMembers(!showMembers)} aria-expanded={showMembers}>
          Members
        </button>
        {group ? null : (
          <>
            <CallButtons engine={engine} peer={peer} call={state.call} online={state.net === "online"} />
            <button class="link" onClick={() => setShowSafety(true)}>
              Safety number
            </button>
          </>
        )}
      </header>
      {group && group.active ? <AppsMenu engine={engine} peer={peer} /> : null}
      <MiniappPrompt engine={engine} />
      {showMembers && group ? <GroupPanel engine={engine} state={state} peer={peer} /> : null}
      {showMembers && !group ? (
        <ul class="members" aria-label="Members">
          <li>{state.username} (you)</li>
          <li>{peer}</li>
        </ul>
      ) : null}
      <ol class="messages" role="log" aria-label="Messages" aria-live="polite" ref={list}>
        {conv.messages.map((m) => (
          <MessageItem
            key={m.id}
            message={m}
            engine={engine}
            peer={peer}
            group={Boolean(group)}
            members={group?.members ?? []}
            onReply={() => {
              setEditing(undefined);
              setReplyTo(m);
              input.current?.focus();
            }}
            onEdit={() => {
              setReplyTo(undefined);
              setEditing(m);
              setText(m.text);
              input.current?.focus();
            }}
          />
        ))}
      </ol>
      <p class="typing" aria-live="polite">
        {typing ? `${peer} is typing…` : ""}
      </p>
      {replyTo || editing ? (
        <div class="context">
          {editing ? "Editing your message" : `Replying to ${replyTo!.from}: ${replyTo!.text.slice(0, 80)}`}
          <button class="link" onClick={cancel} aria-label="Cancel">
            ✕
          </button>
        </div>
      ) : null}
      {group && !group.active ? <p class="hint inactive">You are no longer in this group.</p> : null}
      <form
        class="composer"
        hidden={Boolean(group && !group.active)}
        onSubmit={(e) => {
          e.preventDefault();
          send();
        }}
        aria-busy={busy}
      >
        <label class="attach" title="Attach a file">
          <span aria-hidden="true">📎</span>
          <span class="visually-hidden">Attach a file</span>
          <input
            type="file"
            class="visually-hidden"
            onChange={(e) => {
              const input = e.currentTarget;
              const files = Array.from(input.files ?? []);
              input.value = "";
              for (const file of files) void run(() => engine.sendFile(peer, file));
            }}
          />
        </label>
        <label class="visually-hidden" for="composer">
          Message
        </label>
        <textarea
          id="composer"
          ref={input}
          rows={1}
          placeholder={`Message ${title}`}
          value={text}
          onInput={(e) => {
            setText(e.currentTarget.value);
            engine.typing(peer, e.currentTarget.value.length > 0);
          }}
          onKeyDown={onKey}
        />
        <button type="submit" disabled={!text.trim()}>
          {editing ? "Save" : "Send"}
        </button>
      </form>
      <ErrorLine error={error} />
      {showSafety ? <SafetyNumberDialog engine={engine} peer={peer} onClose={() => setShowSafety(false)} /> : null}
    </section>
  );
}

/** The signed-in view. */
export function ChatView({ engine }: { engine: Engine }) {
  const state = useEngine(engine);
  const [open, setOpen] = useState<string | undefined>();
  const [linking, setLinking] = useState(false);
  const name = (key: string) => state.conversations[key]!.group?.name ?? key;
  const peers = Object.keys(state.conversations).sort((a, b) => name(a).localeCompare(name(b)));
  return (
    <div class={`chat ${open ? "has-open" : ""}`}>
      <aside class="sidebar" aria-label="Chats">
        <header>
          <h1>Microbot</h1>
          <p class="me">
            Signed in as <strong>{state.username}</strong>
          </p>
          <ConnectionBadge state={state} />
          <button class="secondary" onClick={() => setLinking(true)}>
            Link a device
          </button>
        </header>
        {state.callNotice ? (
          <p class="notice" role="status" aria-label="Call notice">
            {state.callNotice}{" "}
            <button class="link" onClick={() => engine.calls.dismiss()} aria-label="Dismiss">
              ✕
            </button>
          </p>
        ) : null}
        <AddContact engine={engine} onAdded={setOpen} />
        <NewGroup engine={engine} onCreated={setOpen} />
        <CallSettings />
        <nav aria-label="Conversations">
          <ul class="peers">
            {peers.map((peer) => {
              const conv = state.conversations[peer]!;
              const unread = conv.unread;
              const label = conv.group ? conv.group.name : peer;
              return (
                <li key={peer}>
                  <button class={peer === open ? "current" : ""} aria-current={peer === open ? "page" : undefined} onClick={() => setOpen(peer)}>
                    {label}
                    {unread > 0 && peer !== open ? <span class="badge" aria-label={`${unread} unread`}>{unread}</span> : null}
                  </button>
                </li>
              );
            })}
          </ul>
          {peers.length === 0 ? <p class="hint">Add a contact by their name to start chatting.</p> : null}
        </nav>
      </aside>
      {open ? <ConversationView engine={engine} state={state} peer={open} onBack={() => setOpen(undefined)} /> : <section class="empty">Choose a chat or add a contact.</section>}
      {state.call ? <CallPanel engine={engine} call={state.call} /> : null}
      {linking ? <LinkDeviceDialog engine={engine} onClose={() => setLinking(false)} /> : null}
    </div>
  );
}

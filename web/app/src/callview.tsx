/**
 * What a person sees of a call: the incoming-call banner (accept / reject),
 * the call panel (remote and own video, mute, camera, hang-up, how long it
 * has lasted) and how it ended, in words; plus the ICE servers setting.
 */
import { useEffect, useRef, useState } from "preact/hooks";

import { ICE_SERVERS_KEY, IceServersError, parseIceServers, type CallView } from "./call.js";
import type { Engine } from "./engine.js";
import { describeError } from "./errors.js";
import { ErrorLine } from "./ui.js";

/** A `<video>` (or `<audio>`) showing `stream`. */
function Media({ stream, label, muted, audioOnly }: { stream: MediaStream | undefined; label: string; muted: boolean; audioOnly: boolean }) {
  const ref = useRef<HTMLVideoElement & HTMLAudioElement>(null);
  useEffect(() => {
    if (ref.current && ref.current.srcObject !== (stream ?? null)) ref.current.srcObject = stream ?? null;
  }, [stream]);
  if (audioOnly) return <audio ref={ref} autoPlay aria-label={label} />;
  return <video ref={ref} autoPlay playsInline muted={muted} aria-label={label} class={muted ? "self" : "remote"} />;
}

function useSeconds(since: number | undefined): number {
  const [now, setNow] = useState(Date.now());
  useEffect(() => {
    if (since === undefined) return;
    const timer = setInterval(() => setNow(Date.now()), 1000);
    return () => clearInterval(timer);
  }, [since]);
  return since === undefined ? 0 : Math.max(0, Math.floor((now - since) / 1000));
}

function status(call: CallView, seconds: number): string {
  switch (call.phase) {
    case "starting":
      return call.video ? "Starting your camera and microphone…" : "Starting your microphone…";
    case "calling":
      return `Calling ${call.peer}…`;
    case "incoming":
      return `${call.peer} is calling you${call.video ? " (video)" : ""}`;
    case "accepting":
      return call.video ? "Starting your camera and microphone…" : "Starting your microphone…";
    case "connecting":
      return `Connecting to ${call.peer}…`;
    case "connected":
      return `In call with ${call.peer} · ${Math.floor(seconds / 60)}:${String(seconds % 60).padStart(2, "0")}`;
    case "ended":
      return call.message ?? "Call ended.";
  }
}

/** The call panel: shown while a call rings, runs or has just ended. */
export function CallPanel({ engine, call }: { engine: Engine; call: CallView }) {
  const controller = engine.calls;
  const seconds = useSeconds(call.connectedAt);
  const panel = useRef<HTMLElement>(null);
  useEffect(() => {
    // The first button gets the focus: Accept when it rings, Hang up in a call.
    panel.current?.querySelector<HTMLButtonElement>("button.primary")?.focus();
  }, [call.phase]);
  useEffect(() => {
    const onKey = (e: KeyboardEvent) => {
      if (e.key === "Escape" && call.phase === "ended") controller.dismiss();
    };
    window.addEventListener("keydown", onKey);
    return () => window.removeEventListener("keydown", onKey);
  }, [call.phase, controller]);
  if (call.phase === "incoming") {
    return (
      <section class="call incoming" role="alertdialog" aria-label={`Incoming call from ${call.peer}`} ref={panel}>
        <p class="call-status" role="status">
          {status(call, seconds)}
        </p>
        <div class="call-actions">
          <button class="primary accept" onClick={() => void controller.accept()}>
            Accept
          </button>
          <button class="danger" onClick={() => void controller.reject()}>
            Reject
          </button>
        </div>
      </section>
    );
  }
  const live = call.phase !== "ended";
  return (
    <section class={`call ${call.phase}`} aria-label={`Call with ${call.peer}`} ref={panel}>
      {live && call.video ? (
        <div class="videos">
          <Media stream={call.remote} label={`${call.peer}'s video`} muted={false} audioOnly={false} />
          <Media stream={call.local} label="Your video" muted={true} audioOnly={false} />
        </div>
      ) : null}
      {live && !call.video ? <Media stream={call.remote} label={`${call.peer}'s audio`} muted={false} audioOnly={true} /> : null}
      <p class="call-status" role="status" aria-label="Call status">
        {status(call, seconds)}
      </p>
      {live && call.message ? <p class="hint">{call.message}</p> : null}
      <div class="call-actions">
        {live && call.phase !== "starting" ? (
          <>
            <button class="secondary" aria-pressed={call.muted} onClick={() => controller.toggleMute()}>
              {call.muted ? "Unmute" : "Mute"}
            </button>
            {call.video ? (
              <button class="secondary" aria-pressed={call.cameraOff} onClick={() => controller.toggleCamera()}>
                {call.cameraOff ? "Turn camera on" : "Turn camera off"}
              </button>
            ) : null}
          </>
        ) : null}
        {live ? (
          <button class="primary danger" onClick={() => void controller.hangUp()}>
            Hang up
          </button>
        ) : (
          <button class="primary" onClick={() => controller.dismiss()}>
            Close
          </button>
        )}
      </div>
    </section>
  );
}

/** The buttons that start a call with `peer`. */
export function CallButtons({ engine, peer, call, online }: { engine: Engine; peer: string; call: CallView | undefined; online: boolean }) {
  const [error, setError] = useState<string | undefined>();
  const busy = call !== undefined && call.phase !== "ended";
  const start = (video: boolean) => {
    setError(undefined);
    engine.calls.start(peer, video).catch((e: unknown) => setError(describeError(e)));
  };
  const why = busy ? "You are in a call" : online ? undefined : "Calls need a connection to the server";
  return (
    <>
      <button class="link" disabled={busy || !online} title={why} onClick={() => start(false)}>
        Audio call
      </button>
      <button class="link" disabled={busy || !online} title={why} onClick={() => start(true)}>
        Video call
      </button>
      <ErrorLine error={error} />
    </>
  );
}

/** The ICE servers setting (STUN/TURN, JSON), kept in this browser. */
export function CallSettings() {
  const [text, setText] = useState(() => localStorage.getItem(ICE_SERVERS_KEY) ?? "");
  const [error, setError] = useState<string | undefined>();
  const [saved, setSaved] = useState(false);
  const save = (e: Event) => {
    e.preventDefault();
    setSaved(false);
    try {
      parseIceServers(text);
    } catch (err) {
      setError(err instanceof IceServersError ? err.message : "That setting cannot be used.");
      return;
    }
    setError(undefined);
    if (text.trim() === "") localStorage.removeItem(ICE_SERVERS_KEY);
    else localStorage.setItem(ICE_SERVERS_KEY, text.trim());
    setSaved(true);
  };
  return (
    <details class="call-settings">
      <summary>Call settings</summary>
      <form onSubmit={save} aria-label="Call settings">
        <label>
          STUN/TURN servers (JSON; empty: direct connections only)
          <textarea rows={3} value={text} placeholder='[{"urls": "turn:turn.example.org:3478", "username": "…", "credential": "…"}]' onInput={(e) => setText(e.currentTarget.value)} />
        </label>
        <button type="submit">Save call settings</button>
        {saved ? <p class="hint">Saved. The next call uses these servers.</p> : null}
        <ErrorLine error={error} />
      </form>
    </details>
  );
}

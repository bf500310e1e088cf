/**
 * Calls with real WebRTC (issue 18, SPEC.md §11.8): one `RTCPeerConnection`
 * per call, signalled only through the SDK's `CallSignalling` (end-to-end
 * encrypted `CallSignal` contents, so the server never sees a session
 * description or a candidate). Media goes peer to peer; the ICE servers
 * (STUN/TURN) come from the "Call settings" of the app (none by default:
 * host candidates are enough on one machine or one network).
 *
 * Everything a person sees is `CallView`: the phase, the streams, and what
 * happened in plain words. Every way a call ends (hang-up on either side,
 * reject, busy, no answer, lost connection, no camera permission) goes
 * through `teardown`, which stops the camera and microphone and closes the
 * connection.
 */
import { client } from "@microbot/sdk";

type CallSignalling = client.CallSignalling;
type CallEvent = client.CallEvent;
type CallInfo = client.CallInfo;

/** The phases of a call on this page. */
export type CallPhase = "starting" | "calling" | "incoming" | "accepting" | "connecting" | "connected" | "ended";

/** A call as the UI shows it. */
export interface CallView {
  /** Hex of the call id. */
  id: string;
  phase: CallPhase;
  peer: string;
  video: boolean;
  direction: "outgoing" | "incoming";
  muted: boolean;
  cameraOff: boolean;
  local?: MediaStream;
  remote?: MediaStream;
  /** When the media connected (ms). */
  connectedAt?: number;
  /** What happened, in words (ended calls, problems). */
  message?: string;
}

/** How long an answered call may take to connect. */
export const CONNECT_TIMEOUT_MS = 30_000;
/** How long a connection may stay "disconnected" before the call ends. */
export const DISCONNECTED_GRACE_MS = 10_000;
/** Where the ICE servers setting is kept. */
export const ICE_SERVERS_KEY = "microbot.iceServers";

/** An ICE servers setting that cannot be used, with why in words. */
export class IceServersError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "IceServersError";
  }
}

/**
 * Reads the ICE servers setting: empty (no servers) or a JSON list of
 * `RTCIceServer`s, e.g.
 * `[{"urls": "turn:turn.example.org:3478", "username": "u", "credential": "p"}]`.
 */
export function parseIceServers(text: string): RTCIceServer[] {
  if (text.trim() === "") return [];
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new IceServersError("That is not valid JSON. Write a list like [{\"urls\": \"turn:turn.example.org:3478\", \"username\": \"…\", \"credential\": \"…\"}].");
  }
  if (!Array.isArray(value) || value.length > 8) throw new IceServersError("Write a list ([…]) of at most 8 servers.");
  return value.map((entry: unknown, i) => {
    if (typeof entry !== "object" || entry === null) throw new IceServersError(`Server ${i + 1} is not an object with "urls".`);
    const { urls, username, credential } = entry as Record<string, unknown>;
    const list = typeof urls === "string" ? [urls] : Array.isArray(urls) ? urls : [];
    if (list.length === 0 || !list.every((u) => typeof u === "string" && /^(stun|turn|turns):\S+$/.test(u))) {
      throw new IceServersError(`Server ${i + 1}: "urls" must be stun:, turn: or turns: addresses.`);
    }
    if (username !== undefined && typeof username !== "string") throw new IceServersError(`Server ${i + 1}: "username" must be text.`);
    if (credential !== undefined && typeof credential !== "string") throw new IceServersError(`Server ${i + 1}: "credential" must be text.`);
    const server: RTCIceServer = { urls: list as string[] };
    if (username !== undefined) server.username = username;
    if (credential !== undefined) server.credential = credential;
    return server;
  });
}

/** The stored ICE servers (none when unset or unreadable). */
export function storedIceServers(): RTCIceServer[] {
  try {
    return parseIceServers(localStorage.getItem(ICE_SERVERS_KEY) ?? "");
  } catch {
    return [];
  }
}

/** Why the camera or microphone could not be used, in words. */
export function describeMediaError(error: unknown, video: boolean): string {
  const what = video ? "camera and microphone" : "microphone";
  const name = error instanceof DOMException ? error.name : "";
  switch (name) {
    case "NotAllowedError":
    case "SecurityError":
      return `No permission to use your ${what}. Allow it in the browser's site settings, then call again.`;
    case "NotFoundError":
    case "OverconstrainedError":
      return `No ${what} found on this device.`;
    case "NotReadableError":
    case "AbortError":
      return `Your ${what} is in use by another program.`;
    default:
      return typeof navigator.mediaDevices?.getUserMedia === "function" ? `Your ${what} could not be started.` : "This browser cannot make calls here (calls need HTTPS).";
  }
}

function endedMessage(reason: client.CallEndReason, call: CallInfo): string | undefined {
  const who = call.peer;
  switch (reason) {
    case "hungUp":
      return "Call ended.";
    case "declined":
      return call.direction === "outgoing" ? `Call rejected: ${who} declined.` : `You declined the call from ${who}.`;
    case "busy":
      return `${who} is busy in another call.`;
    case "noAnswer":
      return call.direction === "outgoing" ? `No answer from ${who} after 30 seconds.` : `Missed call from ${who}.`;
    case "cancelled":
      return call.direction === "outgoing" ? "Call cancelled." : `Missed call from ${who}.`;
    case "answeredElsewhere":
      return "Answered on another of your devices.";
    case "declinedElsewhere":
      return "Declined on another of your devices.";
    case "failed":
      // Only the SDK ends a call as failed without `fail`: its offer or answer could not be sent.
      return call.direction === "outgoing" && call.state === "ringing"
        ? `The call to ${who} could not be started. Check your connection and try again.`
        : `The call with ${who} could not go on. Check your connection and try again.`;
    case "glare":
      return undefined;
  }
}

interface Live {
  info: CallInfo;
  pc?: RTCPeerConnection;
  local?: MediaStream;
  remote?: MediaStream;
  offerSdp?: string;
  /** Set once the remote description is applied; candidates wait for it. */
  remoteSet: boolean;
  pending: RTCIceCandidateInit[];
  timers: ReturnType<typeof setTimeout>[];
}

/** The call of this page: WebRTC on one side, `CallSignalling` on the other. */
export class CallController {
  /** What the UI shows; undefined when there is no call and nothing to tell. */
  view: CallView | undefined;
  /** A call we could not take (busy, or it rang while we were away), in words. */
  notice: string | undefined;
  private live: Live | undefined;
  /** The call `fail` ended (its own message stays; the SDK's "ended" for it adds nothing). */
  private failedId: string | undefined;

  constructor(
    private readonly signalling: CallSignalling,
    private readonly onChange: () => void,
    private readonly iceServers: () => RTCIceServer[] = storedIceServers,
    /** Puts a line about a call into the conversation with `peer`. */
    private readonly onLog: (peer: string, id: string, line: string) => void = () => undefined,
  ) {
    signalling.onEvent((event) => void this.event(event));
    // Closing or leaving the page ends the call for the peer too (best effort: the hang-up may not get out).
    if (typeof window !== "undefined") window.addEventListener("pagehide", () => void this.hangUp());
  }

  private show(patch: Partial<CallView>): void {
    if (this.view) this.view = { ...this.view, ...patch };
    this.onChange();
  }

  /** Calls `peer`: camera/microphone, offer, ringing until answered or 30 s. */
  async start(peer: string, video: boolean): Promise<void> {
    const info = this.signalling.startCall(peer, video);
    const live: Live = { info, remoteSet: false, pending: [], timers: [] };
    this.live = live;
    this.notice = undefined;
    this.view = { id: info.id, phase: "starting", peer, video, direction: "outgoing", muted: false, cameraOff: false };
    this.onChange();
    try {
      live.local = await navigator.mediaDevices.getUserMedia({ audio: true, video });
    } catch (error) {
      await this.fail(live, describeMediaError(error, video), false);
      return;
    }
    if (this.live !== live) return this.stopTracks(live.local);
    try {
      const pc = this.connection(live);
      const offer = await pc.createOffer();
      await pc.setLocalDescription(offer);
      if (this.live !== live) return;
      this.show({ phase: "calling", local: live.local });
      await this.signalling.sendOffer(offer.sdp ?? "");
    } catch (error) {
      console.warn("call set-up failed", error);
      if (this.live === live) await this.fail(live, `The call to ${peer} could not be started. Check your connection and try again.`, true);
    }
  }

  /** Accepts the ringing call. */
  async accept(): Promise<void> {
    const live = this.live;
    if (!live || this.view?.phase !== "incoming") return;
    const video = live.info.video;
    this.show({ phase: "accepting" });
    try {
      live.local = await navigator.mediaDevices.getUserMedia({ audio: true, video });
    } catch (error) {
      await this.fail(live, describeMediaError(error, video), true);
      return;
    }
    if (this.live !== live) return this.stopTracks(live.local);
    try {
      const pc = this.connection(live);
      await pc.setRemoteDescription({ type: "offer", sdp: live.offerSdp ?? "" });
      live.remoteSet = true;
      const answer = await pc.createAnswer();
      await pc.setLocalDescription(answer);
      if (this.live !== live) return;
      this.show({ phase: "connecting", local: live.local });
      this.connectTimeout(live);
      await this.signalling.accept(answer.sdp ?? "");
    } catch (error) {
      console.warn("answering failed", error);
      if (this.live === live) await this.fail(live, `The call from ${live.info.peer} could not be answered. Check your connection.`, true);
    }
  }

  /** Declines the ringing call. */
  async reject(): Promise<void> {
    if (this.view?.phase !== "incoming") return;
    await this.signalling.reject().catch((error: unknown) => console.warn("decline not sent", error));
  }

  /** Ends the call from this side. */
  async hangUp(): Promise<void> {
    await this.signalling.hangUp().catch((error: unknown) => console.warn("hang-up not sent", error));
  }

  /** Mutes or unmutes the microphone. */
  toggleMute(): void {
    const live = this.live;
    if (!live?.local || !this.view) return;
    const muted = !this.view.muted;
    for (const track of live.local.getAudioTracks()) track.enabled = !muted;
    this.show({ muted });
  }

  /** Turns the camera off or on (video calls). */
  toggleCamera(): void {
    const live = this.live;
    if (!live?.local || !this.view) return;
    const cameraOff = !this.view.cameraOff;
    for (const track of live.local.getVideoTracks()) track.enabled = !cameraOff;
    this.show({ cameraOff });
  }

  /** Clears an ended call's message or a notice. */
  dismiss(): void {
    if (this.view?.phase === "ended") this.view = undefined;
    this.notice = undefined;
    this.onChange();
  }

  private connection(live: Live): RTCPeerConnection {
    const pc = new RTCPeerConnection({ iceServers: this.iceServers() });
    live.pc = pc;
    for (const track of live.local?.getTracks() ?? []) pc.addTrack(track, live.local!);
    pc.onicecandidate = (e) => {
      const c = e.candidate;
      if (!c || !c.candidate || this.live !== live) return;
      this.signalling.sendCandidate({ candidate: c.candidate, sdpMid: c.sdpMid ?? "", sdpMLineIndex: c.sdpMLineIndex ?? 0 }).catch((error: unknown) => console.warn("candidate not sent", error));
    };
    pc.ontrack = (e) => {
      if (this.live !== live) return;
      live.remote = e.streams[0] ?? live.remote ?? new MediaStream();
      if (!e.streams[0]) live.remote.addTrack(e.track);
      this.show({ remote: live.remote });
    };
    pc.onconnectionstatechange = () => {
      if (this.live !== live) return;
      switch (pc.connectionState) {
        case "connected":
          for (const t of live.timers) clearTimeout(t);
          live.timers = [];
          this.show({ phase: "connected", connectedAt: this.view?.connectedAt ?? Date.now(), message: undefined });
          return;
        case "disconnected":
          this.show({ message: `Connection to ${live.info.peer} interrupted. Trying to restore it…` });
          live.timers.push(
            setTimeout(() => {
              if (this.live === live && pc.connectionState !== "connected") void this.fail(live, `The connection to ${live.info.peer} was lost.`, true);
            }, DISCONNECTED_GRACE_MS),
          );
          return;
        case "failed":
          void this.fail(live, `The call with ${live.info.peer} could not connect: no network path between you. A TURN server in Call settings may help.`, true);
          return;
        default:
          return;
      }
    };
    return pc;
  }

  private connectTimeout(live: Live): void {
    live.timers.push(
      setTimeout(() => {
        if (this.live === live && live.pc?.connectionState !== "connected") void this.fail(live, `The call with ${live.info.peer} could not connect within 30 seconds.`, true);
      }, CONNECT_TIMEOUT_MS),
    );
  }

  private async event(event: CallEvent): Promise<void> {
    switch (event.type) {
      case "ringing": {
        // Glare: our own call to the same person lost; answer theirs at once.
        const live: Live = { info: event.call, offerSdp: event.offerSdp, remoteSet: false, pending: [], timers: [] };
        this.live = live;
        this.notice = undefined;
        this.view = { id: event.call.id, phase: "incoming", peer: event.call.peer, video: event.call.video, direction: "incoming", muted: false, cameraOff: false };
        this.onChange();
        if (event.replaces) await this.accept();
        return;
      }
      case "answered": {
        const live = this.live;
        if (!live?.pc || live.info.id !== event.call.id) return;
        live.info = event.call;
        this.show({ phase: "connecting" });
        this.connectTimeout(live);
        try {
          await live.pc.setRemoteDescription({ type: "answer", sdp: event.answerSdp });
          live.remoteSet = true;
          for (const c of live.pending.splice(0)) await live.pc.addIceCandidate(c);
        } catch (error) {
          console.warn("answer not applied", error);
          if (this.live === live) await this.fail(live, `The answer from ${live.info.peer} could not be used.`, true);
        }
        return;
      }
      case "remoteCandidate": {
        const live = this.live;
        if (!live || live.info.id !== event.call.id) return;
        const init: RTCIceCandidateInit = { candidate: event.candidate.candidate, sdpMid: event.candidate.sdpMid || null, sdpMLineIndex: event.candidate.sdpMLineIndex };
        if (!live.pc || !live.remoteSet) {
          live.pending.push(init);
          return;
        }
        await live.pc.addIceCandidate(init).catch((error: unknown) => console.warn("candidate not added", error));
        return;
      }
      case "ended": {
        const live = this.live;
        if (live && live.info.id === event.call.id) this.teardown(live);
        const message = endedMessage(event.reason, event.call);
        if (message === undefined) return; // glare: the winning call follows
        if (this.failedId === event.call.id) return; // `fail` said why already
        this.log(event.call, message);
        this.view = { id: event.call.id, phase: "ended", peer: event.call.peer, video: event.call.video, direction: event.call.direction, muted: false, cameraOff: false, message };
        this.onChange();
        return;
      }
      case "missed":
        this.notice = event.busy ? `${event.from} called while you were in a call.` : `Missed call from ${event.from}.`;
        this.onLog(event.from, `missed-${Date.now()}`, this.notice);
        this.onChange();
        return;
      case "refused":
        console.warn("call signal dropped", event.error);
        return;
    }
  }

  /** Ends the call with `message`; `tell`: send the hang-up (or decline) to the peer. */
  private async fail(live: Live, message: string, tell: boolean): Promise<void> {
    this.failedId = live.info.id;
    this.teardown(live);
    this.log(live.info, message);
    this.view = { id: live.info.id, phase: "ended", peer: live.info.peer, video: live.info.video, direction: live.info.direction, muted: false, cameraOff: false, message };
    this.onChange();
    if (this.signalling.current?.id === live.info.id) {
      await (tell ? this.signalling.hangUp("failed") : this.signalling.hangUp()).catch((error: unknown) => console.warn("hang-up not sent", error));
    }
  }

  /** The conversation line of a call that ended: how long it lasted, or what happened. */
  private log(info: CallInfo, message: string): void {
    const since = this.view?.id === info.id ? this.view.connectedAt : undefined;
    const kind = info.video ? "Video call" : "Audio call";
    if (since === undefined) {
      this.onLog(info.peer, info.id, message);
      return;
    }
    const seconds = Math.max(0, Math.round((Date.now() - since) / 1000));
    this.onLog(info.peer, info.id, `${kind} with ${info.peer} · ${Math.floor(seconds / 60)}:${String(seconds % 60).padStart(2, "0")}`);
  }

  private stopTracks(stream: MediaStream | undefined): void {
    for (const track of stream?.getTracks() ?? []) track.stop();
  }

  /** Stops the camera and microphone, closes the connection, forgets the call. */
  private teardown(live: Live): void {
    for (const t of live.timers) clearTimeout(t);
    live.timers = [];
    this.stopTracks(live.local);
    if (live.pc) {
      live.pc.onicecandidate = null;
      live.pc.ontrack = null;
      live.pc.onconnectionstatechange = null;
      live.pc.close();
    }
    if (this.live === live) this.live = undefined;
  }
}

/**
 * Call signalling (SPEC.md §11.1 `CallSignal`, §11.2 rules, §11.8 call
 * set-up): typed offer / answer / ICE candidate / hang-up messages carried as
 * ordinary end-to-end encrypted 1:1 contents, so the server only ever sees
 * ciphertext, and `CallSignalling`, the per-device state of at most one call
 * (ringing, answered, ended) with the rules §11.8 adds: busy, glare (the
 * lower call id wins), a 30 s ring timeout, stale offers, answers and
 * hang-ups from the account's other devices, bounded ICE candidates.
 *
 * This module owns no media and no `RTCPeerConnection`: the application
 * creates the session descriptions and candidates with its WebRTC stack and
 * feeds them in; what arrives comes out as `CallEvent`s. Sending is the
 * injected `send` (normally `Messenger.sendContent`, which serialises sends
 * per device in call order, so an offer always leaves before its
 * candidates); time is the injected clock and timer, so tests are
 * deterministic.
 */
import { create } from "@bufbuild/protobuf";

import { toHex } from "../bytes.js";
import {
  CallAnswerSchema,
  CallHangupSchema,
  CallIceCandidateSchema,
  CallOfferSchema,
  ContentError,
  ContentSchema,
  HangupReason,
  validateContent,
  type CallSignal,
  type Content,
} from "../content.js";
import type { Rng } from "../rng.js";
import type { ClientEvent } from "./groups.js";
import type { Incoming } from "./messenger.js";

/** Length of a call id (§11.2). */
export const CALL_ID_LEN = 16;
/** How long an unanswered call rings before it ends as not answered (§11.8). */
export const RING_TIMEOUT_MS = 30_000;
/** The callee rings this much longer than the caller waits, so the caller's hang-up normally ends it (§11.8). */
export const RING_GRACE_MS = 5_000;
/** An offer sent longer ago than this (by its `sent_at_ms`) is a missed call, not a ringing one (§11.8). */
export const OFFER_MAX_AGE_MS = 60_000;
/** At most this many ICE candidates per call and direction are kept or sent (§11.8). */
export const MAX_ICE_CANDIDATES = 64;

/** Why a call ended, in the words of `CallHangup.reason` (UNSPECIFIED and unknown values read as `normal`). */
export type HangupReasonName = "normal" | "declined" | "busy" | "answeredElsewhere";

/** One ICE candidate (RFC 8839 `candidate` attribute, without the `a=`). */
export interface IceCandidate {
  /** The candidate line, 1..=4096 bytes. */
  candidate: string;
  /** The media stream identification tag (≤ 256 bytes, may be empty). */
  sdpMid: string;
  /** Index of the media description. */
  sdpMLineIndex: number;
}

/** What one `CallSignal` says. */
export type CallSignalBody =
  /** The caller's session description. */
  | { kind: "offer"; sdp: string; video: boolean }
  /** The callee's session description. */
  | { kind: "answer"; sdp: string }
  /** One ICE candidate of either side. */
  | ({ kind: "iceCandidate" } & IceCandidate)
  /** Either side ends or declines the call. */
  | { kind: "hangup"; reason: HangupReasonName };

/** A received, validated call signal. */
export interface CallSignalMessage {
  /** The call (16 bytes). */
  callId: Uint8Array;
  /** Who sent it (our own name for `ownCopyTo`). */
  from: string;
  /** The sending device. */
  deviceId: bigint;
  /** The sender's `sent_at_ms`. */
  sentAtMs: number;
  /** What it says. */
  signal: CallSignalBody;
  /** Set when another device of our own account sent it to this peer (a §11.7 transcript). */
  ownCopyTo?: string;
}

/** Why a call signal or a call operation was refused. */
export type CallSignalErrorKind =
  /** The content is not a call signal. */
  | "NotCallSignal"
  /** A call signal breaks a §11.2 rule (`field` names which). */
  | "Invalid"
  /** A call signal inside a group conversation (calls are 1:1 only). */
  | "InGroup"
  /** A call is already under way on this device. */
  | "Busy"
  /** The operation does not fit the call's state (e.g. accepting when nothing rings). */
  | "WrongState"
  /** More than `MAX_ICE_CANDIDATES` candidates for one call. */
  | "TooManyCandidates";

/** A typed call-signalling failure. */
export class CallSignalError extends Error {
  /** Which failure. */
  readonly kind: CallSignalErrorKind;
  /** For `Invalid`: the field as `message.field`. */
  readonly field: string | undefined;

  /** A `CallSignalError` of `kind`. */
  constructor(kind: CallSignalErrorKind, message: string, field?: string) {
    super(message);
    this.name = "CallSignalError";
    this.kind = kind;
    this.field = field;
  }
}

function reasonName(reason: HangupReason): HangupReasonName {
  switch (reason) {
    case HangupReason.DECLINED:
      return "declined";
    case HangupReason.BUSY:
      return "busy";
    case HangupReason.ANSWERED_ELSEWHERE:
      return "answeredElsewhere";
    default:
      return "normal";
  }
}

const REASON_WIRE: Record<HangupReasonName, HangupReason> = {
  normal: HangupReason.NORMAL,
  declined: HangupReason.DECLINED,
  busy: HangupReason.BUSY,
  answeredElsewhere: HangupReason.ANSWERED_ELSEWHERE,
};

function wireSignal(signal: CallSignalBody): CallSignal["signal"] {
  switch (signal.kind) {
    case "offer":
      return { case: "offer", value: create(CallOfferSchema, { sdp: signal.sdp, video: signal.video }) };
    case "answer":
      return { case: "answer", value: create(CallAnswerSchema, { sdp: signal.sdp }) };
    case "iceCandidate":
      return {
        case: "iceCandidate",
        value: create(CallIceCandidateSchema, {
          candidate: signal.candidate,
          sdpMid: signal.sdpMid,
          sdpMlineIndex: signal.sdpMLineIndex,
        }),
      };
    case "hangup":
      return { case: "hangup", value: create(CallHangupSchema, { reason: REASON_WIRE[signal.reason] }) };
  }
}

/**
 * The 1:1 `Content` carrying `signal` for call `callId`, checked against
 * §11.2 (`CallSignalError` `Invalid` naming the field if not: an SDP over
 * 65 536 bytes, a candidate over 4096, a call id not 16 bytes…).
 */
export function callSignalContent(rng: Rng, callId: Uint8Array, signal: CallSignalBody, sentAtMs: number = Date.now()): Content {
  if (signal.kind === "iceCandidate" && (!Number.isInteger(signal.sdpMLineIndex) || signal.sdpMLineIndex < 0 || signal.sdpMLineIndex > 0xffff_ffff)) {
    throw new CallSignalError("Invalid", "CallIceCandidate.sdp_mline_index: not a 32-bit unsigned integer", "CallIceCandidate.sdp_mline_index");
  }
  const content = create(ContentSchema, {
    messageId: rng.fill(16),
    sentAtMs: BigInt(Math.max(0, Math.floor(sentAtMs))),
    body: { case: "callSignal", value: { callId: callId.slice(), signal: wireSignal(signal) } },
  });
  checked(content);
  return content;
}

function checked(content: Content): void {
  try {
    validateContent(content);
  } catch (error) {
    if (error instanceof ContentError) throw new CallSignalError("Invalid", error.message, error.field);
    throw error;
  }
}

/** True if `incoming` carries a `CallSignal` (valid or not). */
export function isCallSignal(incoming: Incoming): boolean {
  return incoming.content.body.case === "callSignal";
}

/**
 * The typed form of a received call signal. `CallSignalError`: `NotCallSignal`,
 * `InGroup` (a call signal in a group conversation, or an own-device copy
 * naming a group), `Invalid` (a §11.2 rule; the Messenger has already checked
 * them, this re-checks contents built elsewhere).
 */
export function readCallSignal(incoming: Incoming): CallSignalMessage {
  const body = incoming.content.body;
  if (body.case !== "callSignal") throw new CallSignalError("NotCallSignal", `not a call signal but ${body.case ?? "an empty body"}`);
  if (incoming.groupId !== undefined || incoming.content.groupId.length > 0) throw new CallSignalError("InGroup", "a call signal must come in a 1:1 conversation");
  checked(incoming.content);
  const s = body.value.signal;
  let signal: CallSignalBody;
  switch (s.case) {
    case "offer":
      signal = { kind: "offer", sdp: s.value.sdp, video: s.value.video };
      break;
    case "answer":
      signal = { kind: "answer", sdp: s.value.sdp };
      break;
    case "iceCandidate":
      signal = { kind: "iceCandidate", candidate: s.value.candidate, sdpMid: s.value.sdpMid, sdpMLineIndex: s.value.sdpMlineIndex };
      break;
    case "hangup":
      signal = { kind: "hangup", reason: reasonName(s.value.reason) };
      break;
    default:
      throw new CallSignalError("Invalid", "CallSignal.signal: missing", "CallSignal.signal");
  }
  const message: CallSignalMessage = { callId: body.value.callId.slice(), from: incoming.from, deviceId: incoming.deviceId, sentAtMs: Number(incoming.content.sentAtMs), signal };
  const copy = incoming.sentCopy;
  if (copy) {
    if (copy.destination.kind !== "direct") throw new CallSignalError("InGroup", "an own-device copy of a call signal must name a 1:1 conversation");
    message.ownCopyTo = copy.destination.username;
  }
  return message;
}

/** One call as the application sees it. */
export interface CallInfo {
  /** Hex of the 16-byte call id. */
  id: string;
  /** The other person. */
  peer: string;
  /** Whether the offer included video. */
  video: boolean;
  /** Who called. */
  direction: "outgoing" | "incoming";
  /** `ringing` until answered (by the callee here, or the caller's answer arrived), then `answered`. */
  state: "ringing" | "answered";
  /** Outgoing, answered: the callee's device that answered (its candidates alone are used). */
  peerDeviceId?: bigint;
}

/** Why a call ended. */
export type CallEndReason =
  /** One side hung up after the call was answered. */
  | "hungUp"
  /** The callee declined. */
  | "declined"
  /** The callee was in another call. */
  | "busy"
  /** Nobody answered within the ring timeout (either side). */
  | "noAnswer"
  /** The caller gave up before we answered. */
  | "cancelled"
  /** Another device of our account answered it. */
  | "answeredElsewhere"
  /** Another device of our account declined it. */
  | "declinedElsewhere"
  /** Both called each other at once and the other call won (§11.8 glare). */
  | "glare"
  /** The application ended it because the media connection failed. */
  | "failed";

/** What `CallSignalling` reports. */
export type CallEvent =
  /** An incoming call rings; `replaces` is our own outgoing call to the same person it won over (glare: answer at once). */
  | { type: "ringing"; call: CallInfo; offerSdp: string; replaces?: CallInfo }
  /** Our outgoing call was answered: apply `answerSdp` as the remote description. */
  | { type: "answered"; call: CallInfo; answerSdp: string }
  /** A candidate of the peer, to add once the remote description is set. */
  | { type: "remoteCandidate"; call: CallInfo; candidate: IceCandidate }
  /** The call is over (`local`: this device ended it). */
  | { type: "ended"; call: CallInfo; reason: CallEndReason; local: boolean }
  /** A call we did not take: we were busy (`busy`, answered as such) or the offer was stale. */
  | { type: "missed"; from: string; video: boolean; busy: boolean }
  /** A call signal that was dropped, with why (it never changes the state). */
  | { type: "refused"; from: string; error: CallSignalError };

/** Options of `CallSignalling`. */
export interface CallSignallingOptions {
  /** Sends one 1:1 content, end-to-end encrypted (e.g. `(to, c) => messenger.sendContent(connection, to, c)`). */
  send: (to: string, content: Content) => Promise<unknown>;
  /** Randomness for call and message ids. */
  rng: Rng;
  /** The clock (ms since the epoch); default `Date.now`. */
  now?: () => number;
  /** Ring timeout (default `RING_TIMEOUT_MS`). */
  ringTimeoutMs?: number;
  /** Starts a timer; default `setTimeout`. */
  setTimer?: (callback: () => void, ms: number) => unknown;
  /** Cancels a timer of `setTimer`; default `clearTimeout`. */
  clearTimer?: (handle: unknown) => void;
}

interface Held extends IceCandidate {
  deviceId: bigint;
}

interface Current {
  info: CallInfo;
  callId: Uint8Array;
  timer: unknown;
  /** Our own description went out (candidates before it wait in `outgoing`). */
  described: boolean;
  outgoing: IceCandidate[];
  sentCandidates: number;
  /** Peer candidates that came before they could be used. */
  held: Held[];
  receivedCandidates: number;
}

/**
 * The call state of one device: at most one call at a time. Feed it every
 * received message (`handle` / `receive`) and the application's own
 * descriptions and candidates; listen to `onEvent`.
 */
export class CallSignalling {
  private readonly options: CallSignallingOptions;
  private readonly listeners = new Set<(event: CallEvent) => void>();
  private readonly now: () => number;
  private readonly ringMs: number;
  private readonly setTimer: (callback: () => void, ms: number) => unknown;
  private readonly clearTimer: (handle: unknown) => void;
  private call: Current | undefined;

  /** Signalling over `options.send`. */
  constructor(options: CallSignallingOptions) {
    this.options = options;
    this.now = options.now ?? Date.now;
    this.ringMs = options.ringTimeoutMs ?? RING_TIMEOUT_MS;
    this.setTimer = options.setTimer ?? ((callback, ms) => setTimeout(callback, ms));
    this.clearTimer = options.clearTimer ?? ((handle) => clearTimeout(handle as ReturnType<typeof setTimeout>));
  }

  /** Calls `listener` for every event; returns a function that removes it. */
  onEvent(listener: (event: CallEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** The call under way, if any (a copy). */
  get current(): CallInfo | undefined {
    return this.call ? { ...this.call.info } : undefined;
  }

  private emit(event: CallEvent): void {
    for (const listener of this.listeners) listener(event);
  }

  private send(to: string, callId: Uint8Array, signal: CallSignalBody): Promise<unknown> {
    return this.options.send(to, callSignalContent(this.options.rng, callId, signal, this.now()));
  }

  /** Feeds one client event; true if it was a call signal (consumed, valid or not). */
  handle(event: ClientEvent): boolean {
    if (event.type !== "message" || !isCallSignal(event.message)) return false;
    this.receive(event.message);
    return true;
  }

  /** Applies one received call signal; an invalid one becomes a `refused` event, never an exception. */
  receive(incoming: Incoming): void {
    let message: CallSignalMessage;
    try {
      message = readCallSignal(incoming);
    } catch (error) {
      if (!(error instanceof CallSignalError)) throw error;
      this.emit({ type: "refused", from: incoming.from, error });
      return;
    }
    if (message.ownCopyTo !== undefined) {
      this.ownCopy(message);
      return;
    }
    const call = this.call;
    const same = call !== undefined && toHex(message.callId) === call.info.id && message.from === call.info.peer;
    switch (message.signal.kind) {
      case "offer":
        this.offer(message, message.signal);
        return;
      case "answer":
        if (!same || call.info.direction !== "outgoing" || call.info.state !== "ringing") return;
        call.info.state = "answered";
        call.info.peerDeviceId = message.deviceId;
        this.stopTimer(call);
        this.emit({ type: "answered", call: { ...call.info }, answerSdp: message.signal.sdp });
        this.flushHeld(call);
        return;
      case "iceCandidate": {
        if (!same) return;
        if (call.info.peerDeviceId !== undefined && call.info.peerDeviceId !== message.deviceId) return;
        if (call.receivedCandidates >= MAX_ICE_CANDIDATES) {
          this.emit({ type: "refused", from: message.from, error: new CallSignalError("TooManyCandidates", `more than ${MAX_ICE_CANDIDATES} candidates for one call`) });
          return;
        }
        call.receivedCandidates += 1;
        const { candidate, sdpMid, sdpMLineIndex } = message.signal;
        if (call.info.state === "answered") this.emit({ type: "remoteCandidate", call: { ...call.info }, candidate: { candidate, sdpMid, sdpMLineIndex } });
        else call.held.push({ candidate, sdpMid, sdpMLineIndex, deviceId: message.deviceId });
        return;
      }
      case "hangup": {
        if (!same) return;
        const reason = message.signal.reason;
        if (call.info.direction === "outgoing") {
          if (call.info.state === "ringing") {
            // Another device of the callee answered: that device's answer decides.
            if (reason === "answeredElsewhere") return;
            this.end(reason === "declined" ? "declined" : reason === "busy" ? "busy" : "hungUp", false);
          } else if (call.info.peerDeviceId === message.deviceId) this.end("hungUp", false);
          return;
        }
        this.end(call.info.state === "ringing" ? "cancelled" : "hungUp", false);
        return;
      }
    }
  }

  private offer(message: CallSignalMessage, offer: { sdp: string; video: boolean }): void {
    const call = this.call;
    const id = toHex(message.callId);
    if (call && call.info.id === id) return; // a repeated offer
    if (call) {
      // Glare (§11.8): both called each other; the lower call id wins.
      const glare = call.info.direction === "outgoing" && call.info.state === "ringing" && call.info.peer === message.from;
      if (glare && id > call.info.id) return;
      if (glare) {
        const replaced = { ...call.info };
        this.stopTimer(call);
        this.call = undefined;
        this.emit({ type: "ended", call: replaced, reason: "glare", local: false });
        this.ring(message, offer, replaced);
        return;
      }
      void this.send(message.from, message.callId, { kind: "hangup", reason: "busy" }).catch(() => undefined);
      this.emit({ type: "missed", from: message.from, video: offer.video, busy: true });
      return;
    }
    if (this.now() - message.sentAtMs > OFFER_MAX_AGE_MS) {
      this.emit({ type: "missed", from: message.from, video: offer.video, busy: false });
      return;
    }
    this.ring(message, offer);
  }

  private ring(message: CallSignalMessage, offer: { sdp: string; video: boolean }, replaces?: CallInfo): void {
    const info: CallInfo = { id: toHex(message.callId), peer: message.from, video: offer.video, direction: "incoming", state: "ringing", peerDeviceId: message.deviceId };
    const call = this.fresh(info, message.callId);
    call.timer = this.setTimer(() => {
      if (this.call === call && call.info.state === "ringing") this.end("noAnswer", true);
    }, this.ringMs + RING_GRACE_MS);
    this.emit(replaces ? { type: "ringing", call: { ...info }, offerSdp: offer.sdp, replaces } : { type: "ringing", call: { ...info }, offerSdp: offer.sdp });
  }

  /** An answer or hang-up one of our other devices sent for the call ringing here. */
  private ownCopy(message: CallSignalMessage): void {
    const call = this.call;
    if (!call || call.info.direction !== "incoming" || call.info.state !== "ringing") return;
    if (toHex(message.callId) !== call.info.id || message.ownCopyTo !== call.info.peer) return;
    if (message.signal.kind === "answer") this.end("answeredElsewhere", false);
    else if (message.signal.kind === "hangup") this.end("declinedElsewhere", false);
  }

  private fresh(info: CallInfo, callId: Uint8Array): Current {
    const call: Current = { info, callId, timer: undefined, described: false, outgoing: [], sentCandidates: 0, held: [], receivedCandidates: 0 };
    this.call = call;
    return call;
  }

  private stopTimer(call: Current): void {
    if (call.timer !== undefined) this.clearTimer(call.timer);
    call.timer = undefined;
  }

  private end(reason: CallEndReason, local: boolean): void {
    const call = this.call;
    if (!call) return;
    this.stopTimer(call);
    this.call = undefined;
    this.emit({ type: "ended", call: { ...call.info }, reason, local });
  }

  private flushHeld(call: Current): void {
    const held = call.held.filter((h) => call.info.peerDeviceId === undefined || h.deviceId === call.info.peerDeviceId);
    call.held = [];
    for (const { candidate, sdpMid, sdpMLineIndex } of held) {
      if (this.call !== call) return;
      this.emit({ type: "remoteCandidate", call: { ...call.info }, candidate: { candidate, sdpMid, sdpMLineIndex } });
    }
  }

  private need(direction: CallInfo["direction"], state: CallInfo["state"], what: string): Current {
    const call = this.call;
    if (!call || call.info.direction !== direction || call.info.state !== state) throw new CallSignalError("WrongState", `cannot ${what} now`);
    return call;
  }

  /**
   * Reserves an outgoing call to `peer` (no message yet: create the offer,
   * then `sendOffer`). `CallSignalError` `Busy` while another call exists.
   */
  startCall(peer: string, video: boolean): CallInfo {
    if (this.call) throw new CallSignalError("Busy", "a call is already under way");
    const callId = this.options.rng.fill(CALL_ID_LEN);
    return { ...this.fresh({ id: toHex(callId), peer, video, direction: "outgoing", state: "ringing" }, callId).info };
  }

  /** Sends the offer of the reserved call and starts the ring timeout; if the send fails the call ends (`failed`) and the error is thrown. */
  async sendOffer(sdp: string): Promise<void> {
    const call = this.need("outgoing", "ringing", "send an offer");
    if (call.described) throw new CallSignalError("WrongState", "the offer was already sent");
    const content = callSignalContent(this.options.rng, call.callId, { kind: "offer", sdp, video: call.info.video }, this.now());
    call.described = true;
    call.timer = this.setTimer(() => {
      if (this.call !== call || call.info.state !== "ringing") return;
      this.end("noAnswer", true);
      void this.send(call.info.peer, call.callId, { kind: "hangup", reason: "normal" }).catch(() => undefined);
    }, this.ringMs);
    const sent = this.options.send(call.info.peer, content);
    const waiting = this.takeOutgoing(call);
    try {
      await Promise.all([sent, waiting]);
    } catch (error) {
      if (this.call === call) this.end("failed", true);
      throw error;
    }
  }

  /**
   * Accepts the ringing call with our answer; the peer's candidates that
   * came meanwhile follow as `remoteCandidate` events (set the remote
   * description before calling this).
   */
  async accept(answerSdp: string): Promise<void> {
    const call = this.need("incoming", "ringing", "accept");
    const content = callSignalContent(this.options.rng, call.callId, { kind: "answer", sdp: answerSdp }, this.now());
    call.info.state = "answered";
    call.described = true;
    this.stopTimer(call);
    const sent = this.options.send(call.info.peer, content);
    const waiting = this.takeOutgoing(call);
    this.flushHeld(call);
    try {
      await Promise.all([sent, waiting]);
    } catch (error) {
      if (this.call === call) this.end("failed", true);
      throw error;
    }
  }

  /** Declines the ringing call (`declined` to the caller and, as a copy, to our other devices). */
  async reject(): Promise<void> {
    const call = this.need("incoming", "ringing", "decline");
    this.end("declined", true);
    await this.send(call.info.peer, call.callId, { kind: "hangup", reason: "declined" });
  }

  /**
   * Ends the call from this side (`reason` `failed` when the media
   * connection broke). The state is cleared first, so a failed send of the
   * hang-up still leaves this device free; the error is thrown.
   */
  async hangUp(reason: "hungUp" | "failed" = "hungUp"): Promise<void> {
    const call = this.call;
    if (!call) return;
    const declining = call.info.direction === "incoming" && call.info.state === "ringing";
    const offered = call.info.direction === "incoming" || call.described;
    this.end(declining ? "declined" : call.info.state === "ringing" && reason === "hungUp" ? "cancelled" : reason, true);
    if (offered) await this.send(call.info.peer, call.callId, { kind: "hangup", reason: declining ? "declined" : "normal" });
  }

  /** Sends one of our ICE candidates; held until our description is sent. `TooManyCandidates` past `MAX_ICE_CANDIDATES`. */
  async sendCandidate(candidate: IceCandidate): Promise<void> {
    const call = this.call;
    if (!call) throw new CallSignalError("WrongState", "no call to send a candidate for");
    // Checked now, so a bad candidate fails here rather than in a later flush.
    callSignalContent(this.options.rng, call.callId, { kind: "iceCandidate", ...candidate });
    if (call.sentCandidates + call.outgoing.length >= MAX_ICE_CANDIDATES) throw new CallSignalError("TooManyCandidates", `more than ${MAX_ICE_CANDIDATES} candidates for one call`);
    if (!call.described) {
      call.outgoing.push({ ...candidate });
      return;
    }
    call.sentCandidates += 1;
    await this.send(call.info.peer, call.callId, { kind: "iceCandidate", ...candidate });
  }

  private async takeOutgoing(call: Current): Promise<void> {
    const waiting = call.outgoing;
    call.outgoing = [];
    call.sentCandidates += waiting.length;
    await Promise.all(waiting.map((c) => this.send(call.info.peer, call.callId, { kind: "iceCandidate", ...c })));
  }
}

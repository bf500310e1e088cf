/**
 * Own-device copies (SPEC.md §11.7): what a device sends to a 1:1
 * conversation also goes, pairwise, to the account's other devices as a
 * `SyncMessage` whose `SentTranscript` names the conversation and carries the
 * content as sent (without padding). Receivers honour a transcript only from
 * a device of their own account that decrypted with the account's identity
 * key, over a pairwise session. An identified group message needs no
 * transcript: the server fans it out to the sender's other devices too
 * (§12.10), which hold the sender key like any member device (§6.3); a
 * sealed one (§19.8) goes only to the members, so the sender's other
 * devices get a transcript naming the group.
 */
import { create } from "@bufbuild/protobuf";

import { bytesEqual } from "../bytes.js";
import { ContentSchema, type Content } from "../content.js";
import type { Rng } from "../rng.js";

/** Where a transcript says its content went. */
export type SyncDestination =
  /** A 1:1 conversation with `username` (may be our own account: a note to self). */
  | { kind: "direct"; username: string }
  /** A group conversation. */
  | { kind: "group"; groupId: Uint8Array };

/** A message one of our own other devices sent, surfaced from its `SentTranscript`. */
export interface SentCopy {
  /** The conversation it went to. */
  destination: SyncDestination;
  /** When that device sent it (its clock, ms since the epoch). */
  timestampMs: bigint;
}

/** Why a transcript was refused (§11.7). */
export type SyncErrorKind =
  /** It came from another account. */
  | "ForeignAccount"
  /** It came from our account's name but decrypted under another identity key. */
  | "ForeignIdentity"
  /** It came inside a group message. */
  | "NotPairwise";

/** A `SyncMessage` that must be dropped. */
export class SyncError extends Error {
  /** Why. */
  readonly kind: SyncErrorKind;

  /** A `SyncError` of `kind`. */
  constructor(kind: SyncErrorKind, message: string) {
    super(message);
    this.name = "SyncError";
    this.kind = kind;
  }
}

/**
 * The transcript of `content` sent to `destination` (§11.7): a fresh message
 * id, the carried content without its padding, `timestamp_ms` = now.
 * `content.group_id` decides the destination kind: a group content names its
 * group, anything else `username`.
 */
export function sentTranscript(rng: Rng, username: string, content: Content, nowMs: bigint = BigInt(Date.now())): Content {
  const carried = create(ContentSchema, { ...content, padding: new Uint8Array(0) });
  const destination =
    carried.groupId.length > 0
      ? { case: "destinationGroupId" as const, value: carried.groupId }
      : { case: "destinationUsername" as const, value: username };
  return create(ContentSchema, {
    messageId: rng.fill(16),
    sentAtMs: nowMs,
    body: { case: "sync", value: { kind: { case: "sent", value: { destination, content: carried, timestampMs: nowMs } } } },
  });
}

/**
 * Opens a received `sync` content (form already checked by `decodeContent`):
 * from `sender` (whose session authenticated `senderIdentity`), received by
 * `me` (identity `myIdentity`), `pairwise` unless it came in a group message.
 * Returns the carried content and where it went; `SyncError` when it must be
 * dropped; `undefined` when `content` is not a transcript.
 */
export function openTranscript(
  content: Content,
  sender: { username: string; identity: Uint8Array; pairwise: boolean },
  me: { username: string; identity: Uint8Array },
): { content: Content; copy: SentCopy } | undefined {
  if (content.body.case !== "sync") return undefined;
  if (!sender.pairwise) throw new SyncError("NotPairwise", "a sync message inside a group message");
  if (sender.username !== me.username) throw new SyncError("ForeignAccount", `a sync message from ${sender.username}`);
  if (!bytesEqual(sender.identity, me.identity)) throw new SyncError("ForeignIdentity", "a sync message from a device of another identity");
  const sent = content.body.value.kind;
  // decodeContent guarantees kind, destination and content (§11.7 form rules).
  if (sent.case !== "sent" || sent.value.content === undefined) return undefined;
  const destination = sent.value.destination;
  const copy: SentCopy = {
    destination:
      destination.case === "destinationGroupId"
        ? { kind: "group", groupId: destination.value }
        : { kind: "direct", username: destination.case === "destinationUsername" ? destination.value : me.username },
    timestampMs: sent.value.timestampMs,
  };
  return { content: sent.value.content, copy };
}

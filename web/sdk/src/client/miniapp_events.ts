/**
 * Miniapp events (SPEC.md §11.1 `MiniappEvent`, §11.2 rules, §11.9): the
 * typed content a miniapp instance's state travels in. A miniapp event is
 * ordinary group content — sealed with the sender's key for the group, so
 * the server relays ciphertext only and never learns the app, the instance
 * or the payload.
 *
 * This module builds and reads the contents; sending is `Groups.sendContent`
 * (which sets `group_id`), and what a payload means is the app's business
 * (`@microbot/miniapp`).
 */
import { create } from "@bufbuild/protobuf";

import { ContentError, ContentSchema, MAX_MINIAPP_ID_LEN, MAX_MINIAPP_PAYLOAD_LEN, validateContent, type Content } from "../content.js";
import type { Rng } from "../rng.js";
import type { Incoming } from "./messenger.js";

/** Length of a miniapp instance id (§11.2). */
export const MINIAPP_INSTANCE_ID_LEN = 16;
export { MAX_MINIAPP_ID_LEN, MAX_MINIAPP_PAYLOAD_LEN };

/** Why a miniapp event could not be built or read. */
export type MiniappEventErrorKind =
  /** The content is not a `MiniappEvent`. */
  | "NotMiniappEvent"
  /** A miniapp event outside a group conversation (§11.9 drops it). */
  | "NotInGroup"
  /** A §11.2 rule is broken (`field` names it). */
  | "Invalid";

/** A miniapp event that could not be built or read. */
export class MiniappEventError extends Error {
  /** Which problem. */
  readonly kind: MiniappEventErrorKind;
  /** For `Invalid`: the field, as `message.field`. */
  readonly field: string | undefined;

  /** A `MiniappEventError` of `kind`. */
  constructor(kind: MiniappEventErrorKind, message: string, field?: string) {
    super(message);
    this.name = "MiniappEventError";
    this.kind = kind;
    this.field = field;
  }
}

/** A received miniapp event, typed. */
export interface MiniappEventMessage {
  /** The app (e.g. `"poll"`). */
  appId: string;
  /** The 16-byte instance id. */
  instanceId: Uint8Array;
  /** The app-defined payload (1..=16 384 bytes). */
  payload: Uint8Array;
  /** The author: the account whose session or sender key opened it (never taken from the payload). */
  from: string;
  /** The group it belongs to. */
  groupId: Uint8Array;
  /** The message id of the carrying content (16 bytes), for de-duplication. */
  messageId: Uint8Array;
  /** The sender's clock when sent (ms); informative only. */
  sentAtMs: number;
}

function checked(content: Content): void {
  try {
    validateContent(content);
  } catch (error) {
    if (error instanceof ContentError) throw new MiniappEventError("Invalid", error.message, error.field);
    throw error;
  }
}

/**
 * The group `Content` carrying one event of instance `instanceId` of app
 * `appId`, checked against §11.2 (`MiniappEventError` `Invalid` naming the
 * field: an empty or over-64-byte app id, an instance id not 16 bytes, an
 * empty or over-16 KiB payload, a group id not 16 bytes).
 */
export function miniappEventContent(rng: Rng, groupId: Uint8Array, appId: string, instanceId: Uint8Array, payload: Uint8Array, sentAtMs: number = Date.now()): Content {
  const content = create(ContentSchema, {
    messageId: rng.fill(16),
    sentAtMs: BigInt(Math.max(0, Math.floor(sentAtMs))),
    groupId: groupId.slice(),
    body: { case: "miniappEvent", value: { appId, instanceId: instanceId.slice(), payload: payload.slice() } },
  });
  if (groupId.length === 0) throw new MiniappEventError("NotInGroup", "a miniapp event belongs in a group conversation");
  checked(content);
  return content;
}

/** True if `incoming` carries a `MiniappEvent` (valid or not). */
export function isMiniappEvent(incoming: Incoming): boolean {
  return incoming.content.body.case === "miniappEvent";
}

/**
 * The typed form of a received miniapp event. `MiniappEventError`:
 * `NotMiniappEvent`, `NotInGroup` (no group id: §11.9 drops it), `Invalid`
 * (a §11.2 rule; the Messenger has already checked them, this re-checks
 * contents built elsewhere).
 */
export function readMiniappEvent(incoming: Incoming): MiniappEventMessage {
  const content = incoming.content;
  const body = content.body;
  if (body.case !== "miniappEvent") throw new MiniappEventError("NotMiniappEvent", `not a miniapp event but ${body.case ?? "an empty body"}`);
  const groupId = incoming.groupId ?? (content.groupId.length > 0 ? content.groupId : undefined);
  if (groupId === undefined) throw new MiniappEventError("NotInGroup", "a miniapp event must come in a group conversation");
  checked(content);
  return {
    appId: body.value.appId,
    instanceId: body.value.instanceId.slice(),
    payload: body.value.payload.slice(),
    from: incoming.from,
    groupId: groupId.slice(),
    messageId: content.messageId.slice(),
    sentAtMs: Number(content.sentAtMs),
  };
}

/**
 * Content (SPEC.md §11): the plaintext of one end-to-end encrypted message.
 * The generated `microbot.content.v1` types, the validity rules of §11.2 and
 * the form rules of own-device sync transcripts (§11.7) — form only: meaning
 * (who may send what) is the applying layer's job — padding to a multiple
 * of 160 bytes (§11.3), and the receive order of §11: size, decode, rules.
 */
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";

import { bytesEqual } from "./bytes.js";
import {
  type AttachmentPointer,
  type Content,
  ContentSchema,
  GroupChangeKind,
  GroupRole,
  TypingAction,
} from "./gen/content_pb.js";

export * from "./gen/content_pb.js";

/** The largest encoded Content, padding included (§11.2). */
export const MAX_CONTENT_LEN = 262_144;
/** The longest `MiniappEvent.app_id`, in bytes (§11.2). */
export const MAX_MINIAPP_ID_LEN = 64;
/** The longest `MiniappEvent.payload`, in bytes (§11.2). */
export const MAX_MINIAPP_PAYLOAD_LEN = 16_384;
/** Encoded Content is padded to a multiple of this (§11.3). */
export const PADDING_BLOCK = 160;

/** Rule names of §11.2 (the Rust `ContentError` variants), plus `decode`. */
export type ContentErrorKind =
  | "too_large"
  | "decode"
  | "unsupported_body"
  | "wrong_length"
  | "empty"
  | "too_long"
  | "too_small"
  | "too_many"
  | "invalid_enum"
  | "missing"
  | "invalid_sync";

/** A Content breaking a rule; `field` is `message.field`. It is dropped; the session is not affected. */
export class ContentError extends Error {
  /** Which rule. */
  readonly kind: ContentErrorKind;
  /** The field, as `message.field`. */
  readonly field: string;

  /** @param kind the rule; @param field the field */
  constructor(kind: ContentErrorKind, field: string) {
    super(`${field}: ${kind.replaceAll("_", " ")}`);
    this.name = "ContentError";
    this.kind = kind;
    this.field = field;
  }
}

const encoder = new TextEncoder();
const utf8Len = (s: string): number => encoder.encode(s).length;

function exactLen(bytes: Uint8Array, len: number, field: string): void {
  if (bytes.length !== len) {
    throw new ContentError("wrong_length", field);
  }
}

function textRange(text: string, min: number, max: number, field: string): void {
  const len = utf8Len(text);
  if (len < min) {
    throw new ContentError("empty", field);
  }
  if (len > max) {
    throw new ContentError("too_long", field);
  }
}

function idList(ids: Uint8Array[], field: string): void {
  if (ids.length === 0) {
    throw new ContentError("empty", field);
  }
  if (ids.length > 1000) {
    throw new ContentError("too_many", field);
  }
  for (const id of ids) {
    exactLen(id, 16, field);
  }
}

function checkPointer(p: AttachmentPointer): void {
  exactLen(p.attachmentId, 16, "AttachmentPointer.attachment_id");
  exactLen(p.key, 32, "AttachmentPointer.key");
  exactLen(p.digest, 32, "AttachmentPointer.digest");
  textRange(p.contentType, 0, 255, "AttachmentPointer.content_type");
  textRange(p.fileName, 0, 255, "AttachmentPointer.file_name");
  textRange(p.caption, 0, 4096, "AttachmentPointer.caption");
  if (p.thumbnail.length > 65536) {
    throw new ContentError("too_long", "AttachmentPointer.thumbnail");
  }
}

const KNOWN_ROLES = new Set<number>([GroupRole.UNSPECIFIED, GroupRole.MEMBER, GroupRole.ADMIN]);

/** Checks every rule of §11.2 except the size (see `encodeContent` / `decodeContent`). */
export function validateContent(content: Content): void {
  exactLen(content.messageId, 16, "Content.message_id");
  if (content.groupId.length !== 0) {
    exactLen(content.groupId, 16, "Content.group_id");
  }
  const body = content.body;
  switch (body.case) {
    case "text": {
      textRange(body.value.text, 1, 65536, "Text.text");
      const reply = body.value.replyTo;
      if (reply !== undefined) {
        exactLen(reply.messageId, 16, "ReplyTo.message_id");
        textRange(reply.authorUsername, 1, 32, "ReplyTo.author_username");
        textRange(reply.snippet, 0, 1024, "ReplyTo.snippet");
      }
      return;
    }
    case "reaction":
      exactLen(body.value.targetMessageId, 16, "Reaction.target_message_id");
      textRange(body.value.emoji, 1, 64, "Reaction.emoji");
      return;
    case "edit":
      exactLen(body.value.targetMessageId, 16, "Edit.target_message_id");
      textRange(body.value.text, 1, 65536, "Edit.text");
      if (body.value.revision < 1n) {
        throw new ContentError("too_small", "Edit.revision");
      }
      return;
    case "delete":
      exactLen(body.value.targetMessageId, 16, "Delete.target_message_id");
      return;
    case "readReceipt":
      idList(body.value.messageIds, "ReadReceipt.message_ids");
      return;
    case "deliveryReceipt":
      idList(body.value.messageIds, "DeliveryReceipt.message_ids");
      return;
    case "typing":
      if (body.value.action !== TypingAction.STARTED && body.value.action !== TypingAction.STOPPED) {
        throw new ContentError("invalid_enum", "Typing.action");
      }
      return;
    case "attachment":
      checkPointer(body.value);
      return;
    case "groupChange": {
      const g = body.value;
      exactLen(g.groupId, 16, "GroupChange.group_id");
      if (g.version < 1n) {
        throw new ContentError("too_small", "GroupChange.version");
      }
      if (g.kind < GroupChangeKind.CREATED || g.kind > GroupChangeKind.ROLE_CHANGED) {
        throw new ContentError("invalid_enum", "GroupChange.kind");
      }
      if (g.usernames.length > 1000) {
        throw new ContentError("too_many", "GroupChange.usernames");
      }
      const needsNames =
        g.kind === GroupChangeKind.MEMBERS_ADDED ||
        g.kind === GroupChangeKind.MEMBERS_REMOVED ||
        g.kind === GroupChangeKind.ROLE_CHANGED;
      if (needsNames && g.usernames.length === 0) {
        throw new ContentError("empty", "GroupChange.usernames");
      }
      for (const name of g.usernames) {
        textRange(name, 1, 32, "GroupChange.usernames");
      }
      if (!KNOWN_ROLES.has(g.role) || (g.kind === GroupChangeKind.ROLE_CHANGED && g.role === GroupRole.UNSPECIFIED)) {
        throw new ContentError("invalid_enum", "GroupChange.role");
      }
      if (g.metadataKey.length !== 0) {
        exactLen(g.metadataKey, 32, "GroupChange.metadata_key");
      }
      if (g.metadata !== undefined) {
        textRange(g.metadata.name, 0, 256, "GroupMetadata.name");
        textRange(g.metadata.description, 0, 4096, "GroupMetadata.description");
        if (g.metadata.avatar !== undefined) {
          checkPointer(g.metadata.avatar);
        }
      }
      return;
    }
    case "senderKeyDistribution":
      exactLen(body.value.groupId, 16, "SenderKeyDistribution.group_id");
      if (body.value.distribution.length === 0) {
        throw new ContentError("empty", "SenderKeyDistribution.distribution");
      }
      if (body.value.distribution.length > 1024) {
        throw new ContentError("too_long", "SenderKeyDistribution.distribution");
      }
      return;
    case "callSignal": {
      exactLen(body.value.callId, 16, "CallSignal.call_id");
      const signal = body.value.signal;
      switch (signal.case) {
        case "offer":
          textRange(signal.value.sdp, 1, 65536, "CallOffer.sdp");
          return;
        case "answer":
          textRange(signal.value.sdp, 1, 65536, "CallAnswer.sdp");
          return;
        case "iceCandidate":
          textRange(signal.value.candidate, 1, 4096, "CallIceCandidate.candidate");
          textRange(signal.value.sdpMid, 0, 256, "CallIceCandidate.sdp_mid");
          return;
        case "hangup":
          return;
        default:
          throw new ContentError("missing", "CallSignal.signal");
      }
    }
    case "miniappEvent":
      // §11.9: which app, which instance, an app-defined payload.
      textRange(body.value.appId, 1, MAX_MINIAPP_ID_LEN, "MiniappEvent.app_id");
      exactLen(body.value.instanceId, 16, "MiniappEvent.instance_id");
      if (body.value.payload.length === 0) {
        throw new ContentError("empty", "MiniappEvent.payload");
      }
      if (body.value.payload.length > MAX_MINIAPP_PAYLOAD_LEN) {
        throw new ContentError("too_long", "MiniappEvent.payload");
      }
      return;
    case "sync": {
      // §11.7: one kind, one destination, a carried content that is valid,
      // is not itself a sync, and belongs to the named conversation.
      const kind = body.value.kind;
      if (kind.case !== "sent") {
        throw new ContentError("missing", "SyncMessage.kind");
      }
      const carried = kind.value.content;
      if (carried === undefined) {
        throw new ContentError("missing", "SentTranscript.content");
      }
      if (carried.body.case === "sync") {
        throw new ContentError("invalid_sync", "SentTranscript.content");
      }
      const destination = kind.value.destination;
      switch (destination.case) {
        case "destinationUsername":
          textRange(destination.value, 1, 32, "SentTranscript.destination_username");
          if (carried.groupId.length !== 0) {
            throw new ContentError("invalid_sync", "SentTranscript.destination_username");
          }
          break;
        case "destinationGroupId":
          exactLen(destination.value, 16, "SentTranscript.destination_group_id");
          if (!bytesEqual(carried.groupId, destination.value)) {
            throw new ContentError("invalid_sync", "SentTranscript.destination_group_id");
          }
          break;
        default:
          throw new ContentError("missing", "SentTranscript.destination");
      }
      validateContent(carried);
      return;
    }
    default:
      throw new ContentError("unsupported_body", "Content.body");
  }
}

/** `p`, the number of zero padding bytes for an unpadded encoding of `unpaddedLen` bytes (§11.3). */
export function paddingLength(unpaddedLen: number): number {
  let total = Math.ceil((unpaddedLen + 3) / PADDING_BLOCK) * PADDING_BLOCK;
  if (total - unpaddedLen === 130) {
    total += PADDING_BLOCK;
  }
  const gap = total - unpaddedLen;
  return gap <= 129 ? gap - 2 : gap - 3;
}

/**
 * What a sender seals: checks §11.2, sets `padding` last (§11.3) and encodes.
 * The result is a multiple of 160 bytes; `ContentError` if a rule is broken
 * or the padded encoding exceeds 262 144 bytes.
 */
export function encodeContent(content: Content): Uint8Array {
  validateContent(content);
  const unpadded = create(ContentSchema, { ...content, padding: new Uint8Array(0) });
  const length = toBinary(ContentSchema, unpadded).length;
  const padded = create(ContentSchema, { ...content, padding: new Uint8Array(paddingLength(length)) });
  const bytes = toBinary(ContentSchema, padded);
  if (bytes.length > MAX_CONTENT_LEN) {
    throw new ContentError("too_large", "Content");
  }
  return bytes;
}

/**
 * What a receiver does with opened plaintext (§11): refuse over 262 144 bytes,
 * decode, check §11.2. Padding is ignored whatever its length or content.
 */
export function decodeContent(bytes: Uint8Array): Content {
  if (bytes.length > MAX_CONTENT_LEN) {
    throw new ContentError("too_large", "Content");
  }
  let content: Content;
  try {
    content = fromBinary(ContentSchema, bytes);
  } catch {
    throw new ContentError("decode", "Content");
  }
  validateContent(content);
  return content;
}

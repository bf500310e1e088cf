/**
 * The ratchet's wire format (SPEC.md §5.4): the fixed 40-byte
 * `RatchetHeader` (`ratchet_key ‖ u32be(PN) ‖ u32be(N)`) and the
 * `RatchetMessage` `0x01 ‖ header ‖ ciphertext ‖ tag`, with the errors of
 * §5.8. Parsing checks the version before the length.
 */
import { concat, readU32be, u32be } from "../bytes.js";
import { KEY_LEN, RATCHET_MESSAGE_VERSION, TAG_LEN } from "../labels.js";

/** Bytes of a `RatchetHeader`. */
export const RATCHET_HEADER_LEN = 40;
/** The shortest `RatchetMessage`: 1 + 40 + 16 = 57 bytes. */
export const MIN_RATCHET_MESSAGE_LEN = 1 + RATCHET_HEADER_LEN + TAG_LEN;
/** `N = 0xFFFFFFFF` is never sent (§5.4). */
export const MAX_MESSAGE_NUMBER = 0xffffffff;

/** Why a ratchet operation was refused (SPEC.md §5.8); the session is unchanged. */
export type RatchetErrorKind =
  | "truncated"
  | "unsupported_version"
  | "too_far_ahead"
  | "duplicate"
  | "message_number_out_of_range"
  | "no_receiving_chain"
  | "invalid_ratchet_key"
  | "authentication_failed"
  | "no_sending_chain"
  | "chain_exhausted";

/** A refused encrypt or decrypt. */
export class RatchetError extends Error {
  /** Which failure. */
  readonly kind: RatchetErrorKind;

  /** @param kind the failure; @param message details */
  constructor(kind: RatchetErrorKind, message?: string) {
    super(message ?? kind.replaceAll("_", " "));
    this.name = "RatchetError";
    this.kind = kind;
  }
}

/** A decoded `RatchetHeader`. */
export interface RatchetHeader {
  /** The sender's current ratchet public key. */
  ratchetKey: Uint8Array;
  /** `PN`: messages sent on the sender's previous chain. */
  previousChainLength: number;
  /** `N`: this message's number on its chain. */
  messageNumber: number;
}

/** The 40 header bytes. */
export function encodeHeader(header: RatchetHeader): Uint8Array {
  return concat(header.ratchetKey, u32be(header.previousChainLength), u32be(header.messageNumber));
}

/** A parsed `RatchetMessage`. */
export interface ParsedRatchetMessage {
  /** The decoded header. */
  header: RatchetHeader;
  /** The 40 header bytes as sent. */
  headerBytes: Uint8Array;
  /** The version byte and header as sent (the message's first 41 bytes). */
  authenticatedPrefix: Uint8Array;
  /** `ciphertext ‖ tag`. */
  sealed: Uint8Array;
}

/** Parses a `RatchetMessage` (§5.6 step 1): version first, then length. */
export function parseRatchetMessage(message: Uint8Array): ParsedRatchetMessage {
  if (message.length === 0) {
    throw new RatchetError("truncated", `0 bytes, at least ${MIN_RATCHET_MESSAGE_LEN}`);
  }
  if (message[0] !== RATCHET_MESSAGE_VERSION) {
    throw new RatchetError("unsupported_version", `version ${message[0]}`);
  }
  if (message.length < MIN_RATCHET_MESSAGE_LEN) {
    throw new RatchetError("truncated", `${message.length} bytes, at least ${MIN_RATCHET_MESSAGE_LEN}`);
  }
  const headerBytes = message.slice(1, 1 + RATCHET_HEADER_LEN);
  return {
    header: {
      ratchetKey: headerBytes.slice(0, KEY_LEN),
      previousChainLength: readU32be(headerBytes, 32),
      messageNumber: readU32be(headerBytes, 36),
    },
    headerBytes,
    authenticatedPrefix: message.slice(0, 1 + RATCHET_HEADER_LEN),
    sealed: message.slice(1 + RATCHET_HEADER_LEN),
  };
}

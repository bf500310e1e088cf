/**
 * Framing (SPEC.md §10): every protobuf message on a byte stream is
 * `varint(len(body)) ‖ body`, with a canonical 1..10-byte unsigned LEB128
 * prefix and a receiver limit `max_frame_len` (default 1 MiB).
 *
 * Invariants of `FrameDecoder`:
 * - a prefix is judged as soon as it is complete (invalid or oversize), before
 *   anything is buffered for its body;
 * - `push` validates every prefix the pushed bytes complete; when one is
 *   refused it keeps none of the pushed bytes (the decoder is as before);
 * - it buffers at most the frames already pushed plus one partial frame of at
 *   most `max_frame_len + 10` bytes.
 * This module knows nothing of message types; `decodeFrameBody` turns a body
 * into a message and maps a protobuf failure to `malformed`.
 */
import { fromBinary, toBinary, type DescMessage, type MessageShape } from "@bufbuild/protobuf";

import { ByteQueue } from "./buffer.js";

/** The protocol's default and maximum `max_frame_len`: 1 MiB (§10.3). */
export const DEFAULT_MAX_FRAME_LEN = 1_048_576;
/** The longest length prefix: 10 bytes (§10.2). */
export const MAX_PREFIX_LEN = 10;

/** What went wrong, with the names of SPEC.md §10.5 and the test vectors. */
export type FrameErrorKind =
  | "oversize"
  | "invalid_length_prefix"
  | "truncated"
  | "malformed"
  | "encode_too_large";

/** A framing failure (SPEC.md §10.5). */
export class FrameError extends Error {
  /** Which failure. */
  readonly kind: FrameErrorKind;
  /** `oversize` / `encode_too_large`: the announced or encoded length. */
  readonly length: bigint | undefined;
  /** `oversize` / `encode_too_large`: the limit in force. */
  readonly max: number | undefined;
  /** `truncated`: bytes of the incomplete frame. */
  readonly buffered: number | undefined;

  /** @param kind the failure; the rest are its details */
  constructor(
    kind: FrameErrorKind,
    details: { length?: bigint; max?: number; buffered?: number; cause?: unknown } = {},
  ) {
    super(FrameError.describe(kind, details), { cause: details.cause });
    this.name = "FrameError";
    this.kind = kind;
    this.length = details.length;
    this.max = details.max;
    this.buffered = details.buffered;
  }

  private static describe(
    kind: FrameErrorKind,
    d: { length?: bigint; max?: number; buffered?: number },
  ): string {
    switch (kind) {
      case "oversize":
        return `frame of ${d.length} bytes exceeds the limit of ${d.max}`;
      case "invalid_length_prefix":
        return "invalid length prefix";
      case "truncated":
        return `stream ended inside a frame (${d.buffered} bytes buffered)`;
      case "malformed":
        return "frame body is not a valid message";
      case "encode_too_large":
        return `message of ${d.length} bytes exceeds the limit of ${d.max}`;
    }
  }
}

/** The canonical varint of `value` (0 ≤ value < 2^64). */
export function encodeVarint(value: number | bigint): Uint8Array {
  let v = BigInt(value);
  if (v < 0n || v >= 1n << 64n) {
    throw new RangeError(`varint out of range: ${value}`);
  }
  const out: number[] = [];
  do {
    let byte = Number(v & 0x7fn);
    v >>= 7n;
    if (v !== 0n) {
      byte |= 0x80;
    }
    out.push(byte);
  } while (v !== 0n);
  return Uint8Array.from(out);
}

/** Result of reading a prefix: incomplete, or its value and length. */
type Prefix = { complete: false } | { complete: true; value: bigint; size: number };

/** Reads a prefix at `offset` of a byte source; throws `invalid_length_prefix` per §10.2. */
function readPrefix(byteAt: (i: number) => number, length: number, offset: number): Prefix {
  let value = 0n;
  for (let i = 0; i < MAX_PREFIX_LEN; i++) {
    const at = offset + i;
    if (at >= length) {
      return { complete: false };
    }
    const byte = byteAt(at);
    if (i === MAX_PREFIX_LEN - 1 && byte !== 0x01) {
      throw new FrameError("invalid_length_prefix");
    }
    value |= BigInt(byte & 0x7f) << BigInt(7 * i);
    if ((byte & 0x80) === 0) {
      if (i > 0 && byte === 0x00) {
        throw new FrameError("invalid_length_prefix");
      }
      return { complete: true, value, size: i + 1 };
    }
  }
  // Unreachable: the 10th byte is 0x01 (high bit clear) or refused above.
  throw new FrameError("invalid_length_prefix");
}

/** Incremental frame decoder (§10.4). */
export class FrameDecoder {
  private readonly maxFrameLen: number;
  private readonly queue = new ByteQueue();
  /** Offset in the queue up to which prefixes were validated (the start of the first frame not yet complete). */
  private validated = 0;

  /** @param maxFrameLen the largest body accepted, default 1 MiB */
  constructor(maxFrameLen: number = DEFAULT_MAX_FRAME_LEN) {
    this.maxFrameLen = maxFrameLen;
  }

  /**
   * Adds stream bytes. Throws `FrameError` (`oversize` or
   * `invalid_length_prefix`) if a prefix the bytes complete is refused; then
   * none of `bytes` is kept.
   */
  push(bytes: Uint8Array): void {
    const held = this.queue.length;
    const total = held + bytes.length;
    const byteAt = (i: number) => (i < held ? this.queue.at(i) : bytes[i - held]!);
    let offset = this.validated;
    while (offset < total) {
      const prefix = readPrefix(byteAt, total, offset);
      if (!prefix.complete) {
        break;
      }
      if (prefix.value > BigInt(this.maxFrameLen)) {
        throw new FrameError("oversize", { length: prefix.value, max: this.maxFrameLen });
      }
      const next = offset + prefix.size + Number(prefix.value);
      if (next > total) {
        break;
      }
      offset = next;
    }
    this.queue.append(bytes);
    this.validated = offset;
  }

  /** The next complete frame body, or `undefined` until more bytes arrive. */
  nextFrame(): Uint8Array | undefined {
    const held = this.queue.length;
    if (held === 0) {
      return undefined;
    }
    const prefix = readPrefix((i) => this.queue.at(i), held, 0);
    if (!prefix.complete) {
      return undefined;
    }
    const frameLen = prefix.size + Number(prefix.value);
    if (frameLen > held) {
      return undefined;
    }
    const body = this.queue.view(prefix.size, Number(prefix.value)).slice();
    this.queue.consume(frameLen);
    this.validated = Math.max(0, this.validated - frameLen);
    return body;
  }

  /** Bytes held that belong to frames not yet returned. */
  get buffered(): number {
    return this.queue.length;
  }

  /**
   * The stream ended: throws `truncated` if part of a frame is buffered.
   * Call after `nextFrame` returned `undefined`.
   */
  finish(): void {
    if (this.buffered > 0) {
      throw new FrameError("truncated", { buffered: this.buffered });
    }
  }
}

/** Frames `body` (§10.1); `encode_too_large` if it exceeds `maxFrameLen`. */
export function encodeFrame(body: Uint8Array, maxFrameLen: number = DEFAULT_MAX_FRAME_LEN): Uint8Array {
  if (body.length > maxFrameLen) {
    throw new FrameError("encode_too_large", { length: BigInt(body.length), max: maxFrameLen });
  }
  const prefix = encodeVarint(body.length);
  const out = new Uint8Array(prefix.length + body.length);
  out.set(prefix, 0);
  out.set(body, prefix.length);
  return out;
}

/** Encodes a protobuf message and frames it (§10.1, §10.3). */
export function encodeMessageFrame<Desc extends DescMessage>(
  schema: Desc,
  message: MessageShape<Desc>,
  maxFrameLen: number = DEFAULT_MAX_FRAME_LEN,
): Uint8Array {
  return encodeFrame(toBinary(schema, message), maxFrameLen);
}

/** Decodes a frame body as the stream's message type; `malformed` on failure (§10.4 step 4). */
export function decodeFrameBody<Desc extends DescMessage>(schema: Desc, body: Uint8Array): MessageShape<Desc> {
  try {
    return fromBinary(schema, body);
  } catch (cause) {
    throw new FrameError("malformed", { cause });
  }
}

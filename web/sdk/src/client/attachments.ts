/**
 * Attachment transfers (SPEC.md §7, §12.11, §12.13 "Attachments"): a file is
 * encrypted in 64 KiB segments while it is uploaded on its own WebSocket
 * (`/v1/ws/attachment`, logged in like a request socket), with progress
 * callbacks; a socket that breaks mid-upload is resumed from the server's
 * committed offset with a fresh token. A download streams the ciphertext
 * through the decryptor into a sink, checks the digest at the end, and
 * resumes from the bytes already taken. Memory stays bounded: one segment,
 * plus what the socket buffers (an upload waits while over `MAX_BUFFERED`).
 *
 * Sources and sinks are small interfaces: `blobSource` (browser `Blob`/`File`),
 * `bytesSource`, `collectSink`; Node files are in `attachments_node.ts`.
 */
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";

import { AttachmentDecryptor, AttachmentEncryptor, AttachmentKey } from "../attachment.js";
import { copy } from "../bytes.js";
import { ContentSchema, type Content } from "../content.js";
import { AttachmentPointerSchema, type AttachmentPointer } from "../gen/content_pb.js";
import { AttachmentStreamHeaderSchema, AttachmentStreamResultSchema, ErrorCode, type AttachmentStreamResult } from "../gen/transport_pb.js";
import { encodeVarint } from "../framing.js";
import type { IdentityKeyPair } from "../identity.js";
import { ATTACHMENT_SEGMENT_LEN, TAG_LEN } from "../labels.js";
import type { Rng } from "../rng.js";
import { login } from "./account.js";
import { Connection, ConnectionError, ServerError, SILENCE_LIMIT_MS, type SocketFactory, type SocketLike } from "./connection.js";

/** The largest binary message on an attachment socket (§12.13). */
export const MAX_ATTACHMENT_MESSAGE = 65_536;
/** An upload waits while the socket holds more than this many unsent bytes. */
export const MAX_BUFFERED = 1 << 20;
/** The largest `AttachmentStreamResult` frame body accepted (§12.11: frames on attachment streams are at most 4096 bytes). */
const MAX_RESULT_FRAME = 4096;
/** How long a finished download waits for the server's Close, watching for stray bytes. */
const END_WAIT_MS = 2000;

/** Where an upload reads the plaintext from. */
export interface AttachmentSource {
  /** Plaintext bytes in all. */
  readonly size: number;
  /** `length` bytes at `offset` (fewer only at the end). */
  read(offset: number, length: number): Promise<Uint8Array>;
}

/** Where a download writes the plaintext to (each chunk authenticated, the whole only after `downloadAttachment` resolves). */
export interface AttachmentSink {
  /** Takes the next chunk of plaintext. */
  write(chunk: Uint8Array): Promise<void>;
  /** Throws away everything written (a failed or restarted download). */
  reset(): Promise<void>;
}

/** A source over a browser `Blob` or `File` (read slice by slice). */
export function blobSource(blob: Blob): AttachmentSource {
  return { size: blob.size, read: async (offset, length) => new Uint8Array(await blob.slice(offset, offset + length).arrayBuffer()) };
}

/** A source over bytes in memory. */
export function bytesSource(bytes: Uint8Array): AttachmentSource {
  return { size: bytes.length, read: (offset, length) => Promise.resolve(bytes.subarray(offset, offset + length)) };
}

/** A sink that keeps the chunks (as `Blob` parts in a browser: `new Blob(sink.chunks)`). */
export function collectSink(): AttachmentSink & { chunks: Uint8Array[]; bytes(): Uint8Array } {
  const chunks: Uint8Array[] = [];
  return {
    chunks,
    write: (chunk) => {
      chunks.push(copy(chunk));
      return Promise.resolve();
    },
    reset: () => {
      chunks.length = 0;
      return Promise.resolve();
    },
    bytes: () => {
      const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
      let at = 0;
      for (const c of chunks) {
        out.set(c, at);
        at += c.length;
      }
      return out;
    },
  };
}

/** Ciphertext bytes of a `plaintextLength`-byte file (§7.2: one 16-byte tag per segment, at least one segment). */
export function ciphertextLength(plaintextLength: number): number {
  const segments = Math.max(1, Math.ceil(plaintextLength / ATTACHMENT_SEGMENT_LEN));
  return plaintextLength + segments * TAG_LEN;
}

/** Why a transfer failed. */
export type TransferErrorKind =
  /** The server refused the transfer (`code`): not retried. */
  | "Refused"
  /** The socket broke more often than `maxAttempts` allows. */
  | "TooManyAttempts"
  /** The server's stream broke the protocol (bad result frame, more bytes than announced, a size that does not match the pointer). */
  | "ProtocolError";

/** A transfer failure; `code` is the server's `ErrorCode` for `Refused`. */
export class TransferError extends Error {
  /** The kind of failure. */
  readonly kind: TransferErrorKind;
  /** The server's error code, when it gave one. */
  readonly code: ErrorCode | undefined;

  /** A `TransferError` of `kind`. */
  constructor(kind: TransferErrorKind, message: string, code?: ErrorCode) {
    super(message);
    this.name = "TransferError";
    this.kind = kind;
    this.code = code;
  }
}

/** How transfers reach the server. */
export interface TransferOptions {
  /** The request socket's URL (`wss://host:port/v1/ws`); the attachment URL is derived from it (`/v1/ws/attachment`). */
  url: string;
  /** Opens sockets (`nodeSocketFactory(...)` or the browser's `WebSocket`). */
  socketFactory: SocketFactory;
  /** The logged-in request connection (e.g. `() => reconnector.connection()`): asked again after a failure. */
  connection: () => Promise<Connection>;
  /** The device that logs the attachment sockets in. */
  deviceId: bigint;
  /** Its device key. */
  deviceKey: IdentityKeyPair;
  /** Called with ciphertext bytes done and the total, as they go. */
  onProgress?: (done: number, total: number) => void;
  /** Sockets opened per transfer before giving up (default 5). */
  maxAttempts?: number;
  /** Waits `ms` between attempts (default `setTimeout`). */
  sleep?: (ms: number) => Promise<void>;
  /** How long an attachment socket may stay silent while a byte is awaited before it counts as broken (default 45 s, §12.13). */
  silenceLimitMs?: number;
  /** Called with each attachment socket once logged in (tests use it to break one). */
  onSocket?: (socket: SocketLike, attempt: number) => void;
}

/** The attachment endpoint next to a request endpoint: `…/v1/ws` → `…/v1/ws/attachment`. */
export function attachmentUrl(requestUrl: string): string {
  const url = new URL(requestUrl);
  url.pathname = url.pathname.replace(/\/+$/, "") + "/attachment";
  return url.toString();
}

/** What an upload is told of the file besides its bytes. */
export interface UploadMetadata {
  /** MIME type (≤ 255 bytes). */
  contentType?: string;
  /** Suggested file name (≤ 255 bytes). */
  fileName?: string;
  /** Caption (≤ 4096 bytes). */
  caption?: string;
}

/** One attachment socket, logged in and detached: bytes in, bytes out, and how it ended. */
class RawSocket {
  private readonly incoming: Uint8Array[] = [];
  private wake: (() => void) | undefined;
  /** Set once the socket closed: the close code. */
  closedCode: number | undefined;

  constructor(
    readonly socket: SocketLike,
    private readonly silenceMs: number,
  ) {
    socket.onmessage = (event) => {
      const data = event.data;
      const bytes = data instanceof ArrayBuffer ? new Uint8Array(data) : data instanceof Uint8Array ? data : undefined;
      if (bytes && bytes.length > 0) this.incoming.push(bytes);
      this.notify();
    };
    socket.onclose = (event) => {
      this.closedCode = event.code;
      this.notify();
    };
  }

  private notify(): void {
    const wake = this.wake;
    this.wake = undefined;
    wake?.();
  }

  /** The next chunk of bytes from the server, or `undefined` once it closed (or stayed silent for `silenceMs`: then it is dropped). */
  async next(silenceMs = this.silenceMs): Promise<Uint8Array | undefined> {
    for (;;) {
      const chunk = this.incoming.shift();
      if (chunk) return chunk;
      if (this.closedCode !== undefined) return undefined;
      let timer: ReturnType<typeof setTimeout> | undefined;
      const heard = await new Promise<boolean>((resolve) => {
        this.wake = () => resolve(true);
        timer = setTimeout(() => resolve(false), silenceMs);
      });
      clearTimeout(timer);
      if (!heard) {
        // A silent server: the transfer is broken (§12.13), resumed on a new socket.
        this.closedCode ??= 1006;
        this.drop();
        return undefined;
      }
    }
  }

  private drop(): void {
    try {
      if (this.socket.terminate) this.socket.terminate();
      else this.socket.close(1000);
    } catch {
      // already closed
    }
  }

  /** Sends bytes in messages of at most 64 KiB, waiting while the socket buffers too much; false once closed. */
  async send(bytes: Uint8Array): Promise<boolean> {
    for (let at = 0; at < bytes.length || (bytes.length === 0 && at === 0); at += MAX_ATTACHMENT_MESSAGE) {
      while ((this.socket.bufferedAmount ?? 0) > MAX_BUFFERED && this.closedCode === undefined) await new Promise((r) => setTimeout(r, 5));
      if (this.closedCode !== undefined) return false;
      try {
        this.socket.send(bytes.subarray(at, at + MAX_ATTACHMENT_MESSAGE));
      } catch {
        return false;
      }
      if (bytes.length === 0) break;
    }
    return true;
  }

  /**
   * Reads the varint-framed `AttachmentStreamResult` (§12.11), returning it
   * and the raw bytes that followed it in the same messages; `undefined`
   * when the socket closed first.
   */
  async result(): Promise<{ result: AttachmentStreamResult; rest: Uint8Array } | undefined> {
    let held = new Uint8Array(0);
    for (;;) {
      const parsed = parseFrame(held);
      if (parsed) return { result: parsed.result, rest: held.subarray(parsed.end) };
      const chunk = await this.next();
      if (!chunk) return undefined;
      const joined = new Uint8Array(held.length + chunk.length);
      joined.set(held);
      joined.set(chunk, held.length);
      held = joined;
      if (held.length > MAX_RESULT_FRAME + 2 && !parseFrame(held)) throw new TransferError("ProtocolError", "the server's result frame is too large");
    }
  }

  /** Whether any byte arrives before the socket closes (waits at most `ms` for the close). */
  async extraBeforeClose(ms: number): Promise<boolean> {
    return (await this.next(ms)) !== undefined;
  }

  close(): void {
    try {
      this.socket.close(1000);
    } catch {
      // already closed
    }
  }
}

/** One varint-framed `AttachmentStreamResult` at the start of `bytes`, or `undefined` while incomplete. */
function parseFrame(bytes: Uint8Array): { result: AttachmentStreamResult; end: number } | undefined {
  let length = 0;
  let i = 0;
  for (;; i++) {
    if (i >= bytes.length) return undefined;
    if (i >= 2) throw new TransferError("ProtocolError", "the server's result frame is too large");
    const byte = bytes[i]!;
    length |= (byte & 0x7f) << (7 * i);
    if ((byte & 0x80) === 0) break;
  }
  if (length > MAX_RESULT_FRAME) throw new TransferError("ProtocolError", "the server's result frame is too large");
  const end = i + 1 + length;
  if (bytes.length < end) return undefined;
  try {
    return { result: fromBinary(AttachmentStreamResultSchema, bytes.subarray(i + 1, end)), end };
  } catch {
    throw new TransferError("ProtocolError", "the server's result frame does not decode");
  }
}

function framed(header: Parameters<typeof create<typeof AttachmentStreamHeaderSchema>>[1]): Uint8Array {
  const body = toBinary(AttachmentStreamHeaderSchema, create(AttachmentStreamHeaderSchema, header));
  const prefix = encodeVarint(body.length);
  const out = new Uint8Array(prefix.length + body.length);
  out.set(prefix);
  out.set(body, prefix.length);
  return out;
}

/** Opens an attachment socket and logs it in (§12.13); `undefined` when it cannot be opened now (retried). */
async function openAttachmentSocket(options: TransferOptions): Promise<RawSocket | undefined> {
  let connection: Connection;
  try {
    connection = await Connection.open({ url: attachmentUrl(options.url), socketFactory: options.socketFactory, keepAlive: false });
  } catch (error) {
    if (error instanceof ConnectionError && error.kind !== "UnsupportedVersion") return undefined;
    throw error;
  }
  try {
    await login(connection, options.deviceId, options.deviceKey);
  } catch (error) {
    connection.close();
    if (error instanceof ConnectionError) return undefined;
    throw error;
  }
  return new RawSocket(connection.detach(), options.silenceLimitMs ?? SILENCE_LIMIT_MS);
}

/** Throws the result's error as a `TransferError`, except `UNAVAILABLE` (another stream is running: retried), for which it returns its delay. */
function checkResult(result: AttachmentStreamResult): number | undefined {
  const error = result.error;
  if (!error || error.code === ErrorCode.UNSPECIFIED) return undefined;
  if (error.code === ErrorCode.UNAVAILABLE) return Math.max(100, Number(error.retryAfterMs));
  throw new TransferError("Refused", `${ErrorCode[error.code] ?? error.code}: ${error.message}`, error.code);
}

/** Calls `fn` up to `maxAttempts` times while it returns a delay (a broken socket, a busy attachment); its value otherwise. */
async function withAttempts<T>(options: TransferOptions, fn: (attempt: number) => Promise<{ done: T } | { retryMs: number }>): Promise<T> {
  const sleep = options.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms)));
  const max = options.maxAttempts ?? 5;
  for (let attempt = 0; attempt < max; attempt++) {
    let outcome: { done: T } | { retryMs: number };
    try {
      outcome = await fn(attempt);
    } catch (error) {
      // A lost request connection is retried (the caller's reconnector brings a new one); anything else is final.
      if (!(error instanceof ConnectionError) || error.kind === "UnsupportedVersion" || error.kind === "ClosedByClient") throw error;
      outcome = { retryMs: 200 * 2 ** attempt };
    }
    if ("done" in outcome) return outcome.done;
    if (attempt + 1 < max) await sleep(outcome.retryMs);
  }
  throw new TransferError("TooManyAttempts", `the transfer broke ${max} times`);
}

/** Turns a request error into a `TransferError` when the server refused (`ServerError`). */
function refused(error: unknown): never {
  if (error instanceof ServerError) throw new TransferError("Refused", error.message, error.code);
  throw error;
}

/**
 * Encrypts `source` under a fresh key and uploads it (§12.11), resuming after
 * a broken socket from the committed offset; returns the pointer to send in
 * a `Content` (§7, content.proto).
 */
export async function uploadAttachment(options: TransferOptions, rng: Rng, source: AttachmentSource, metadata: UploadMetadata = {}): Promise<AttachmentPointer> {
  const key = AttachmentKey.generate(rng);
  const total = ciphertextLength(source.size);
  let attachmentId: Uint8Array | undefined;
  let digest: Uint8Array | undefined;
  await withAttempts(options, async (attempt) => {
    const connection = await options.connection();
    // Start, or resume with a fresh token and the committed offset (§12.11 step 3).
    const descriptor = await connection
      .call({ case: "attachmentUpload", value: { size: BigInt(total), attachmentId: attachmentId ?? new Uint8Array(0) } }, "attachmentUpload")
      .catch(refused);
    attachmentId = descriptor.attachmentId;
    const offset = Number(descriptor.committedOffset);
    if (offset > total) throw new TransferError("ProtocolError", `committed offset ${offset} past the size ${total}`);
    const socket = await openAttachmentSocket(options);
    if (!socket) return { retryMs: 200 * 2 ** attempt };
    options.onSocket?.(socket.socket, attempt);
    try {
      let sent = await socket.send(framed({ kind: { case: "upload", value: { attachmentId, uploadToken: descriptor.uploadToken, offset: BigInt(offset) } } }));
      options.onProgress?.(offset, total);
      // The whole ciphertext is produced again (the digest covers all of it); bytes before `offset` are not sent.
      const encryptor = new AttachmentEncryptor(key);
      let position = 0;
      const emit = async (sealed: Uint8Array) => {
        const start = position;
        position += sealed.length;
        if (!sent || position <= offset) return;
        sent = await socket.send(sealed.subarray(Math.max(0, offset - start)));
        if (sent) options.onProgress?.(position, total);
      };
      for (let at = 0; at < source.size && sent; at += ATTACHMENT_SEGMENT_LEN) {
        const plaintext = await source.read(at, Math.min(ATTACHMENT_SEGMENT_LEN, source.size - at));
        for (const sealed of encryptor.update(plaintext)) await emit(sealed);
      }
      if (!sent) {
        // The socket ended early: a result the server sent first (an error) counts, else it broke.
        const early = await socket.result().catch(() => undefined);
        const busy = early ? checkResult(early.result) : undefined;
        return { retryMs: busy ?? 200 * 2 ** attempt };
      }
      const { finalSegment, summary } = encryptor.finish();
      await emit(finalSegment);
      if (summary.ciphertextLength !== total) throw new TransferError("ProtocolError", "the source changed size while it was read");
      digest = summary.digest;
      // The client's end of its bytes (§12.13: an empty binary message).
      if (sent) sent = await socket.send(new Uint8Array(0));
      const answer = await socket.result();
      if (!answer) return { retryMs: 200 * 2 ** attempt };
      const busy = checkResult(answer.result);
      if (busy !== undefined) return { retryMs: busy };
      if (Number(answer.result.committedOffset) === total) return { done: undefined };
      return { retryMs: 0 };
    } finally {
      socket.close();
    }
  });
  return create(AttachmentPointerSchema, {
    attachmentId: attachmentId!,
    key: key.toBytes(),
    digest: digest!,
    size: BigInt(source.size),
    contentType: metadata.contentType ?? "",
    fileName: metadata.fileName ?? "",
    caption: metadata.caption ?? "",
  });
}

/**
 * Downloads the attachment of `pointer` (§12.11 step 4), decrypting as it
 * arrives into `sink`; after a broken socket it continues from the bytes
 * already taken. Resolves once the digest matched (§7.4): only then is what
 * `sink` holds the file. On any error the sink is reset.
 */
export async function downloadAttachment(options: TransferOptions, pointer: AttachmentPointer, sink: AttachmentSink): Promise<void> {
  const decryptor = new AttachmentDecryptor(AttachmentKey.fromBytes(pointer.key), pointer.digest);
  const total = ciphertextLength(Number(pointer.size));
  let received = 0;
  try {
    await withAttempts(options, async (attempt) => {
      const connection = await options.connection();
      const descriptor = await connection.call({ case: "attachmentDownload", value: { attachmentId: pointer.attachmentId } }, "attachmentDownload").catch(refused);
      if (Number(descriptor.size) !== total) throw new TransferError("ProtocolError", `the server holds ${descriptor.size} bytes, the pointer says ${total}`);
      const socket = await openAttachmentSocket(options);
      if (!socket) return { retryMs: 200 * 2 ** attempt };
      options.onSocket?.(socket.socket, attempt);
      try {
        const header = framed({ kind: { case: "download", value: { attachmentId: pointer.attachmentId, offset: BigInt(received), length: 0n } } });
        if (!(await socket.send(header)) || !(await socket.send(new Uint8Array(0)))) return { retryMs: 200 * 2 ** attempt };
        const answer = await socket.result();
        if (!answer) return { retryMs: 200 * 2 ** attempt };
        const busy = checkResult(answer.result);
        if (busy !== undefined) return { retryMs: busy };
        if (Number(answer.result.length) !== total - received) throw new TransferError("ProtocolError", "the server announced another length than asked for");
        const take = async (chunk: Uint8Array) => {
          if (received + chunk.length > total) throw new TransferError("ProtocolError", "the server sent more bytes than announced");
          received += chunk.length;
          for (const plaintext of decryptor.update(chunk)) await sink.write(plaintext);
          options.onProgress?.(received, total);
        };
        if (answer.rest.length > 0) await take(answer.rest);
        while (received < total) {
          const chunk = await socket.next();
          if (!chunk) return { retryMs: 200 * 2 ** attempt };
          await take(chunk);
        }
        // The server ends with a Close (§12.13); a byte past the announced length is a broken stream.
        if (await socket.extraBeforeClose(END_WAIT_MS)) throw new TransferError("ProtocolError", "the server sent more bytes than announced");
        return { done: undefined };
      } finally {
        socket.close();
      }
    });
    const { plaintext } = decryptor.finish();
    if (plaintext.length > 0) await sink.write(plaintext);
  } catch (error) {
    // AttachmentError (tampered, truncated, digest mismatch) or TransferError: nothing written counts.
    await sink.reset();
    throw error;
  }
}

/** A `Content` carrying `pointer` (content.proto `attachment`), to send with `Messenger.sendContent`. */
export function attachmentContent(rng: Rng, pointer: AttachmentPointer): Content {
  return create(ContentSchema, { messageId: rng.fill(16), sentAtMs: BigInt(Date.now()), body: { case: "attachment", value: pointer } });
}

/**
 * A byte queue for stream readers (framing §10.4, attachments §7.4): bytes
 * are appended at the end and consumed from the front in amortised linear
 * time, whatever the sizes of the pieces a stream is cut into. It holds
 * exactly the bytes appended and not yet consumed (plus spare capacity of at
 * most the same size once compacted).
 */
import { redactSecrets } from "./bytes.js";

/** A FIFO of bytes; prints as `ByteQueue(<redacted>)` since it may hold plaintext. */
export class ByteQueue {
  private storage = new Uint8Array(0);
  private start = 0;
  private end = 0;

  /** Bytes held. */
  get length(): number {
    return this.end - this.start;
  }

  /** The byte at `index` from the front (the caller checks `index < length`). */
  at(index: number): number {
    return this.storage[this.start + index]!;
  }

  /** A view of `length` bytes from `offset` (valid until the next append or consume). */
  view(offset: number, length: number): Uint8Array {
    return this.storage.subarray(this.start + offset, this.start + offset + length);
  }

  /** Appends a copy of `bytes`. */
  append(bytes: Uint8Array): void {
    if (this.end + bytes.length > this.storage.length) {
      const needed = this.length + bytes.length;
      if (needed <= this.storage.length && this.start >= this.storage.length / 2) {
        this.storage.copyWithin(0, this.start, this.end);
      } else {
        const grown = new Uint8Array(Math.max(needed, 2 * this.storage.length, 64));
        grown.set(this.storage.subarray(this.start, this.end));
        this.storage.fill(0);
        this.storage = grown;
      }
      this.end -= this.start;
      this.start = 0;
    }
    this.storage.set(bytes, this.end);
    this.end += bytes.length;
  }

  /** Drops `count` bytes from the front. */
  consume(count: number): void {
    this.storage.fill(0, this.start, this.start + count);
    this.start += count;
    if (this.start === this.end) {
      this.start = 0;
      this.end = 0;
    }
  }

  /** Zeroes and drops everything. */
  clear(): void {
    this.storage.fill(0);
    this.start = 0;
    this.end = 0;
  }
}

redactSecrets(ByteQueue);

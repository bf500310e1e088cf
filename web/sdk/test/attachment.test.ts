/** Attachments (SPEC.md §7.4): streaming equals one-shot; every refusal of the table, and no input after a failure. */
import assert from "node:assert/strict";
import { test } from "node:test";

import {
  AttachmentDecryptor,
  AttachmentEncryptor,
  AttachmentError,
  AttachmentKey,
  decryptAttachment,
  encryptAttachment,
  SEALED_SEGMENT_LEN,
} from "../src/attachment.js";
import { concat, toHex } from "../src/bytes.js";
import { pattern, seededRng } from "./helpers.js";

const key = AttachmentKey.generate(seededRng("attachment"));

function isAttachmentError(kind: AttachmentError["kind"], segment?: number) {
  return (e: unknown) => e instanceof AttachmentError && e.kind === kind && (segment === undefined || e.segment === segment);
}

test("streaming in odd chunks gives the one-shot ciphertext, and decrypts in odd chunks", () => {
  const plain = pattern(3 * 65536 + 100);
  const { ciphertext, summary } = encryptAttachment(key, plain);
  assert.equal(ciphertext.length, plain.length + 16 * 4);
  const enc = new AttachmentEncryptor(key);
  const parts: Uint8Array[] = [];
  for (let i = 0; i < plain.length; i += 7777) {
    parts.push(...enc.update(plain.subarray(i, i + 7777)));
  }
  const done = enc.finish();
  parts.push(done.finalSegment);
  assert.equal(toHex(concat(...parts)), toHex(ciphertext));
  assert.equal(toHex(done.summary.digest), toHex(summary.digest));
  const dec = new AttachmentDecryptor(key, summary.digest);
  const out: Uint8Array[] = [];
  for (let i = 0; i < ciphertext.length; i += 65551) {
    out.push(...dec.update(ciphertext.subarray(i, i + 65551)));
  }
  const end = dec.finish();
  out.push(end.plaintext);
  assert.equal(end.plaintextLength, plain.length);
  assert.equal(toHex(concat(...out)), toHex(plain));
});

test("a multiple of 65536 ends with a full final segment", () => {
  const { ciphertext } = encryptAttachment(key, pattern(2 * 65536));
  assert.equal(ciphertext.length, 2 * SEALED_SEGMENT_LEN);
});

test("the refusals of §7.4", () => {
  const plain = pattern(2 * 65536 + 10);
  const { ciphertext, summary } = encryptAttachment(key, plain);
  const d = summary.digest;
  const open = (c: Uint8Array, digest = d) => decryptAttachment(key, digest, c);
  assert.throws(() => open(new Uint8Array(0)), isAttachmentError("truncated"));
  assert.throws(() => open(ciphertext.subarray(0, 2 * SEALED_SEGMENT_LEN)), isAttachmentError("truncated"));
  assert.throws(() => open(ciphertext.subarray(0, ciphertext.length - 1)), isAttachmentError("corrupt", 2));
  const tampered = Uint8Array.from(ciphertext);
  tampered[SEALED_SEGMENT_LEN + 5]! ^= 1;
  assert.throws(() => open(tampered), isAttachmentError("corrupt", 1));
  const swapped = concat(
    ciphertext.subarray(SEALED_SEGMENT_LEN, 2 * SEALED_SEGMENT_LEN),
    ciphertext.subarray(0, SEALED_SEGMENT_LEN),
    ciphertext.subarray(2 * SEALED_SEGMENT_LEN),
  );
  assert.throws(() => open(swapped), isAttachmentError("corrupt", 0));
  const small = encryptAttachment(key, pattern(10));
  assert.throws(() => decryptAttachment(key, small.summary.digest, concat(small.ciphertext, Uint8Array.of(1))), isAttachmentError("corrupt", 0));
  const full = encryptAttachment(key, pattern(65536));
  assert.throws(() => decryptAttachment(key, full.summary.digest, concat(full.ciphertext, Uint8Array.of(1))), isAttachmentError("trailing_data"));
  assert.throws(() => open(ciphertext, new Uint8Array(32)), isAttachmentError("digest_mismatch"));
  assert.throws(() => decryptAttachment(AttachmentKey.generate(seededRng("other")), d, ciphertext), isAttachmentError("corrupt", 0));
});

test("after an error the decryptor refuses further input", () => {
  const { ciphertext, summary } = encryptAttachment(key, pattern(100));
  const dec = new AttachmentDecryptor(key, summary.digest);
  dec.update(ciphertext.subarray(0, 10));
  assert.throws(() => dec.finish(), isAttachmentError("truncated"));
  assert.throws(() => dec.update(ciphertext.subarray(10)), isAttachmentError("already_failed"));
  assert.throws(() => dec.finish(), isAttachmentError("already_failed"));
});

test("a ciphertext fed one byte at a time decrypts the same", () => {
  const plain = pattern(65536 + 300);
  const { ciphertext, summary } = encryptAttachment(key, plain);
  const dec = new AttachmentDecryptor(key, summary.digest);
  const out: Uint8Array[] = [];
  for (let i = 0; i < ciphertext.length; i++) {
    out.push(...dec.update(ciphertext.subarray(i, i + 1)));
  }
  out.push(dec.finish().plaintext);
  assert.equal(toHex(concat(...out)), toHex(plain));
});

/** Framing (SPEC.md §10): the SPEC's examples, streams cut anywhere, and refusals that keep the decoder unchanged. */
import assert from "node:assert/strict";
import { test } from "node:test";

import { fromHex, toHex } from "../src/bytes.js";
import { encodeFrame, encodeVarint, FrameDecoder, FrameError } from "../src/framing.js";

test("varint examples of §10.2", () => {
  assert.equal(toHex(encodeVarint(0)), "00");
  assert.equal(toHex(encodeVarint(31)), "1f");
  assert.equal(toHex(encodeVarint(300)), "ac02");
  assert.equal(toHex(encodeVarint(1_048_576)), "808040");
  assert.equal(toHex(encodeVarint(1n << 63n)), "80808080808080808001");
  assert.equal(toHex(encodeVarint((1n << 64n) - 1n)), "ffffffffffffffffff01");
});

test("the frame of §10.6", () => {
  const body = fromHex("0a10000102030405060708090a0b0c0d0e0f1080d095ffbc311a040a026869");
  assert.equal(toHex(encodeFrame(body)), "1f" + toHex(body));
  assert.equal(toHex(encodeFrame(new Uint8Array(300))).slice(0, 4), "ac02");
});

test("a stream cut at every position decodes to the same frames", () => {
  const bodies = [new Uint8Array(0), fromHex("6869"), new Uint8Array(300).fill(9), fromHex("ff")];
  const stream = Uint8Array.from(bodies.flatMap((b) => [...encodeFrame(b)]));
  for (let cut = 0; cut <= stream.length; cut++) {
    const decoder = new FrameDecoder(1024);
    const out: string[] = [];
    for (const part of [stream.subarray(0, cut), stream.subarray(cut)]) {
      decoder.push(part);
      for (let f = decoder.nextFrame(); f !== undefined; f = decoder.nextFrame()) {
        out.push(toHex(f));
      }
    }
    decoder.finish();
    assert.deepEqual(out, bodies.map(toHex), `cut at ${cut}`);
  }
});

test("one byte at a time", () => {
  const stream = encodeFrame(new Uint8Array(200).fill(1));
  const decoder = new FrameDecoder(1024);
  let frames = 0;
  for (const byte of stream) {
    decoder.push(Uint8Array.of(byte));
    if (decoder.nextFrame() !== undefined) {
      frames += 1;
    }
  }
  assert.equal(frames, 1);
  decoder.finish();
});

test("refused prefixes keep none of the pushed bytes", () => {
  for (const [bad, kind] of [
    ["8000", "invalid_length_prefix"],
    ["858000", "invalid_length_prefix"],
    ["80808080808080808080", "invalid_length_prefix"],
    ["ffffffffffffffffff02", "invalid_length_prefix"],
    ["0b", "oversize"],
    ["ffffffffffffffffff01", "oversize"],
  ] as const) {
    const decoder = new FrameDecoder(10);
    decoder.push(fromHex("026869"));
    assert.throws(() => decoder.push(fromHex(bad)), (e: unknown) => e instanceof FrameError && e.kind === kind, bad);
    assert.equal(decoder.buffered, 3, `${bad}: only the earlier frame stays`);
    assert.equal(toHex(decoder.nextFrame()!), "6869");
    decoder.finish();
  }
});

test("a prefix is judged before its body arrives, oversize by its value", () => {
  const decoder = new FrameDecoder(1_048_576);
  assert.throws(() => decoder.push(fromHex("81808008")), (e: unknown) => e instanceof FrameError && e.kind === "oversize" && e.length === 0x100_0001n);
});

test("truncation is reported at the end of the stream", () => {
  const decoder = new FrameDecoder(100);
  decoder.push(fromHex("0561"));
  assert.equal(decoder.nextFrame(), undefined);
  assert.throws(() => decoder.finish(), (e: unknown) => e instanceof FrameError && e.kind === "truncated" && e.buffered === 2);
});

test("the encoder refuses a body over the limit and writes nothing", () => {
  assert.throws(() => encodeFrame(new Uint8Array(11), 10), (e: unknown) => e instanceof FrameError && e.kind === "encode_too_large");
  assert.equal(encodeFrame(new Uint8Array(10), 10).length, 11);
});

test("a 1 MiB frame pushed in 7-byte pieces, then a small one", () => {
  const big = new Uint8Array(1_048_576).fill(0x5a);
  const stream = Uint8Array.from([...encodeFrame(big), ...encodeFrame(fromHex("01"))]);
  const decoder = new FrameDecoder();
  const frames: Uint8Array[] = [];
  for (let i = 0; i < stream.length; i += 7) {
    decoder.push(stream.subarray(i, i + 7));
    for (let f = decoder.nextFrame(); f !== undefined; f = decoder.nextFrame()) {
      frames.push(f);
    }
  }
  decoder.finish();
  assert.equal(frames.length, 2);
  assert.equal(frames[0]!.length, big.length);
  assert.ok(frames[0]!.every((b) => b === 0x5a));
  assert.equal(toHex(frames[1]!), "01");
});

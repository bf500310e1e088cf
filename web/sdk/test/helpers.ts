/** Test helpers: a deterministic RNG so that two runs draw the same bytes. */
import { sha256 } from "@noble/hashes/sha2.js";

import { concat, u32be, utf8 } from "../src/bytes.js";
import type { Rng } from "../src/rng.js";

/** An RNG whose draws are SHA-256(label ‖ counter) expanded: the same label gives the same draws. */
export function seededRng(label: string): Rng & { draws: number } {
  let counter = 0;
  const state = { draws: 0 };
  return {
    get draws() {
      return state.draws;
    },
    fill(length: number): Uint8Array {
      state.draws += 1;
      const out = new Uint8Array(length);
      for (let offset = 0; offset < length; offset += 32) {
        const block = sha256(concat(utf8(label), u32be(counter++)));
        out.set(block.subarray(0, Math.min(32, length - offset)), offset);
      }
      return out;
    },
  };
}

/** `n` bytes of a repeating pattern. */
export function pattern(n: number, seed = 7): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    out[i] = (i * 31 + seed) & 0xff;
  }
  return out;
}

/**
 * Randomness, injected: every operation that draws random bytes takes an
 * `Rng`, so that tests and the test vectors of SPEC.md §17.1 replay the exact
 * draws (one `fill` per RNG call, in order, of exactly the drawn size).
 */
import { randomBytes } from "@noble/hashes/utils.js";

import { redactSecrets } from "./bytes.js";

/** A source of random bytes. */
export interface Rng {
  /** Returns `length` fresh random bytes (one draw). */
  fill(length: number): Uint8Array;
}

/** The platform CSPRNG (`crypto.getRandomValues`, in Node and browsers). */
export const systemRng: Rng = {
  fill(length: number): Uint8Array {
    return randomBytes(length);
  },
};

/** A replayed draw did not match what the vector recorded. */
export class ReplayRngError extends Error {
  /** @param message what differed */
  constructor(message: string) {
    super(message);
    this.name = "ReplayRngError";
  }
}

/**
 * Serves a vector's recorded `*_draws` in order (SPEC.md §17.1). A draw of
 * another size, a draw past the end, or draws left over at `finish` mean the
 * implementation does not draw as the SPEC says: all are errors.
 */
export class ReplayRng implements Rng {
  private readonly draws: Uint8Array[];
  private next = 0;

  /** @param draws the recorded draws, oldest first */
  constructor(draws: Uint8Array[]) {
    this.draws = draws.map((d) => Uint8Array.from(d));
  }

  /** Serves the next recorded draw; throws `ReplayRngError` on a size mismatch. */
  fill(length: number): Uint8Array {
    const draw = this.draws[this.next];
    if (draw === undefined) {
      throw new ReplayRngError(`draw ${this.next} of ${length} bytes: no draws left`);
    }
    if (draw.length !== length) {
      throw new ReplayRngError(
        `draw ${this.next}: asked for ${length} bytes, the vector recorded ${draw.length}`,
      );
    }
    this.next += 1;
    return Uint8Array.from(draw);
  }

  /** Throws `ReplayRngError` if recorded draws were not used. */
  finish(): void {
    if (this.next !== this.draws.length) {
      throw new ReplayRngError(`${this.draws.length - this.next} recorded draws left unused`);
    }
  }
}

redactSecrets(ReplayRng);

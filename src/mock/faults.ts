import { randomInt } from 'node:crypto';
import type { FaultKind, MockFaults } from './options.js';

export const DEFAULT_SLOW_MS = 2000;

/** mulberry32: tiny, fast and good enough to draw faults; the same seed gives the same sequence of faults. */
function generator(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export interface FaultDraw {
  /** The fault that decides the answer, if any. */
  kind?: Exclude<FaultKind, 'slow'>;
  /** Delay before answering; 0 when `slow` was not drawn. */
  delayMs: number;
}

/** Draws the faults of one code-endpoint call. Every fraction is drawn on every call, in a fixed order. */
export class FaultDice {
  readonly #faults: MockFaults;
  readonly #random: () => number;

  constructor(faults: MockFaults) {
    this.#faults = faults;
    this.#random = generator(faults.seed ?? randomInt(2 ** 32 - 1));
  }

  draw(): FaultDraw {
    const hit = (fraction = 0) => this.#random() < fraction;
    const f = this.#faults;
    // Evaluate all draws before choosing, so one fault's outcome never shifts the sequence of another.
    const drop = hit(f.drop);
    const html502 = hit(f.html502);
    const busy = hit(f.busy);
    const empty = hit(f.empty);
    const truncated = hit(f.truncated);
    const slow = hit(f.slow);
    const delayMs = slow ? (f.slowMs ?? DEFAULT_SLOW_MS) : 0;
    if (drop) return { kind: 'drop', delayMs };
    if (html502) return { kind: 'html502', delayMs };
    if (busy) return { kind: 'busy', delayMs };
    if (empty) return { kind: 'empty', delayMs };
    if (truncated) return { kind: 'truncated', delayMs };
    return { delayMs };
  }
}

/**
 * Event times in a sliding window: the window ending at `t` holds the events in (t - durationMs, t], so calls
 * exactly `durationMs` apart never share one. A deque of times: each event is added and evicted once, so the
 * count, and with it the exact maximum over all windows, costs O(1) amortised per event.
 */
export class SlidingWindow {
  #times: number[] = [];
  #head = 0;

  constructor(public durationMs: number) {}

  /** Events in the window ending at `now`. */
  count(now: number): number {
    const oldest = now - this.durationMs;
    while (this.#head < this.#times.length && this.#times[this.#head]! <= oldest) this.#head++;
    // Compact once the evicted prefix dominates, so memory follows the window, not the history.
    if (this.#head > 1024 && this.#head * 2 > this.#times.length) {
      this.#times = this.#times.slice(this.#head);
      this.#head = 0;
    }
    return this.#times.length - this.#head;
  }

  /** Record an event at `now` (times must not go backwards); returns the count including it. */
  add(now: number): number {
    const count = this.count(now) + 1;
    this.#times.push(now);
    return count;
  }

  clear(): void {
    this.#times = [];
    this.#head = 0;
  }
}

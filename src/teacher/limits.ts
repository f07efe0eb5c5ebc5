/**
 * Client-side limits for the teacher API: at most `maxConcurrency` requests in flight, and at most `requestsPerMinute`
 * requests and `tokensPerMinute` tokens started within ANY sliding minute (a log of what was taken and when, not a
 * token bucket: a bucket that starts full lets 2N through in the minute that straddles its refill, which a provider
 * metering by sliding window answers with 429). A request takes its *estimated* tokens before it is sent; its entry
 * is corrected with the real usage afterwards. A 429 with Retry-After pauses every caller, not just the one that was
 * refused, so a bulk job backs off as a whole. Time comes from an injectable clock so tests run fast.
 */

export interface Clock {
  /** Milliseconds, monotonic. */
  now(): number;
  sleep(ms: number): Promise<void>;
}

export const realClock: Clock = {
  now: () => performance.now(),
  sleep: (ms) => (ms > 0 ? Bun.sleep(ms) : Promise.resolve()),
};

export interface LimitOptions {
  /** Requests in flight at once (default 8). */
  maxConcurrency: number;
  /** Default: unlimited. */
  requestsPerMinute: number;
  /** Prompt + completion tokens per minute. Default: unlimited. */
  tokensPerMinute: number;
  /**
   * The sliding window the per-minute limits are held over (default 60 000 ms: a minute). A shorter window scales
   * the allowance with it (tests: 1200/min over 100 ms = 2 per 100 ms).
   */
  windowMs: number;
}

export const DEFAULT_LIMITS: LimitOptions = {
  maxConcurrency: 8,
  requestsPerMinute: Infinity,
  tokensPerMinute: Infinity,
  windowMs: 60_000,
};

/** One take from a window: its time and amount (corrected by `adjust`). */
export interface WindowEntry {
  at: number;
  amount: number;
}

/**
 * At most `limit` units taken within any window of `windowMs`: the takes of the last window are kept with their
 * times and expire one by one. The sum may exceed the limit only through corrections (real usage above the
 * estimate), which then delay later takes until enough has expired.
 */
export class SlidingWindow {
  private readonly entries: WindowEntry[] = [];
  private used = 0;
  readonly limit: number;

  constructor(
    perMinute: number,
    private readonly clock: Clock,
    readonly windowMs = 60_000,
  ) {
    this.limit = Math.max(1, (perMinute * windowMs) / 60_000);
  }

  get unlimited(): boolean {
    return !Number.isFinite(this.limit);
  }

  private expire(now: number): void {
    while (this.entries.length > 0 && this.entries[0].at <= now - this.windowMs) this.used -= this.entries.shift()!.amount;
  }

  /** 0 when `amount` fits now, else how many ms until enough of the window has expired for it. */
  waitFor(amount: number): number {
    if (this.unlimited) return 0;
    const now = this.clock.now();
    this.expire(now);
    const want = Math.min(amount, this.limit); // a request larger than the whole allowance would otherwise wait forever
    let used = this.used;
    if (used + want <= this.limit) return 0;
    for (const entry of this.entries) {
      used -= entry.amount;
      if (used + want <= this.limit) return Math.max(1, entry.at + this.windowMs - now);
    }
    return this.windowMs; // corrections pushed the total above what expiry frees: look again a window later
  }

  /** Takes `amount` now (call after `waitFor` said 0); the entry can be corrected later. */
  take(amount: number): WindowEntry {
    const entry = { at: this.clock.now(), amount: this.unlimited ? 0 : Math.min(amount, this.limit) };
    if (!this.unlimited) {
      this.entries.push(entry);
      this.used += entry.amount;
    }
    return entry;
  }

  /** Sets an entry's amount to what was really used (no effect once it has left the window). */
  adjust(entry: WindowEntry, actual: number): void {
    if (this.unlimited || !this.entries.includes(entry)) return;
    this.used += actual - entry.amount;
    entry.amount = actual;
  }

  /** What is taken within the current window. */
  inWindow(): number {
    this.expire(this.clock.now());
    return this.used;
  }
}

export interface Permit {
  /** Frees the concurrency slot and corrects the token bucket with the real usage (when known). */
  release(actualTokens?: number): void;
}

export class Limiter {
  readonly options: LimitOptions;
  private readonly requests: SlidingWindow;
  private readonly tokens: SlidingWindow;
  private active = 0;
  private readonly waiting: Array<() => void> = [];
  private pausedUntil = 0;
  /** High-water mark of requests in flight (for tests and stats). */
  maxActive = 0;

  constructor(options: Partial<LimitOptions> = {}, private readonly clock: Clock = realClock) {
    this.options = { ...DEFAULT_LIMITS, ...options };
    if (!(this.options.maxConcurrency >= 1)) throw new RangeError("maxConcurrency must be >= 1");
    this.requests = new SlidingWindow(this.options.requestsPerMinute, clock, this.options.windowMs);
    this.tokens = new SlidingWindow(this.options.tokensPerMinute, clock, this.options.windowMs);
  }

  get inFlight(): number {
    return this.active;
  }

  /** Every caller waits until `until` (clock ms) before its next request. */
  pauseUntil(until: number): void {
    this.pausedUntil = Math.max(this.pausedUntil, until);
  }

  /** Waits for a concurrency slot, the pause, and room for one request and `estimatedTokens` tokens in the window. */
  async acquire(estimatedTokens: number): Promise<Permit> {
    await this.slot();
    let entry: WindowEntry;
    try {
      entry = await this.rate(estimatedTokens);
    } catch (err) {
      this.freeSlot();
      throw err;
    }
    let released = false;
    return {
      release: (actualTokens) => {
        if (released) return;
        released = true;
        if (actualTokens !== undefined) this.tokens.adjust(entry, actualTokens);
        this.freeSlot();
      },
    };
  }

  private async slot(): Promise<void> {
    if (this.active >= this.options.maxConcurrency) {
      await new Promise<void>((resolve) => this.waiting.push(resolve));
    } // a freed slot is handed over directly, without ever dropping `active`
    else this.active++;
    this.maxActive = Math.max(this.maxActive, this.active);
  }

  private freeSlot(): void {
    const next = this.waiting.shift();
    if (next) next();
    else this.active--;
  }

  /** Both windows are checked before either is taken from, so a request never holds one while waiting for the other. */
  private async rate(estimatedTokens: number): Promise<WindowEntry> {
    for (;;) {
      const pause = this.pausedUntil - this.clock.now();
      const wait = Math.max(pause, this.requests.waitFor(1), this.tokens.waitFor(estimatedTokens));
      if (wait > 0) {
        await this.clock.sleep(wait);
        continue;
      }
      this.requests.take(1);
      return this.tokens.take(estimatedTokens);
    }
  }
}

/** Rough token count before sending (~4 characters per token for English), plus the completion budget. */
export function estimateTokens(promptText: string, maxTokens: number, n: number): number {
  return Math.ceil(promptText.length / 4) + maxTokens * n;
}

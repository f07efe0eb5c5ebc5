/**
 * Client-side limits for the teacher API: at most `maxConcurrency` requests in flight, and token buckets for
 * requests/min and tokens/min (the way providers meter them). A request takes its *estimated* tokens before it is
 * sent and is corrected with the real usage afterwards. A 429 with Retry-After pauses every caller, not just the one
 * that was refused, so a bulk job backs off as a whole. Time comes from an injectable clock so tests run fast.
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
  /** Bucket sizes as a fraction of a minute's allowance (default 1: a full minute may be spent at once). */
  burstMinutes: number;
}

export const DEFAULT_LIMITS: LimitOptions = {
  maxConcurrency: 8,
  requestsPerMinute: Infinity,
  tokensPerMinute: Infinity,
  burstMinutes: 1,
};

/** A continuously refilling bucket; it may go into debt when real usage exceeds the estimate. */
export class TokenBucket {
  private level: number;
  private updatedAt: number;
  readonly capacity: number;
  private readonly perMs: number;

  constructor(perMinute: number, burstMinutes: number, private readonly clock: Clock) {
    this.capacity = Math.max(1, perMinute * burstMinutes);
    this.perMs = perMinute / 60_000;
    this.level = this.capacity;
    this.updatedAt = clock.now();
  }

  private refill(): void {
    const now = this.clock.now();
    this.level = Math.min(this.capacity, this.level + (now - this.updatedAt) * this.perMs);
    this.updatedAt = now;
  }

  /** Takes `amount` now and returns 0, or returns how many ms to wait before it could be taken. */
  tryTake(amount: number): number {
    if (!Number.isFinite(this.perMs)) return 0;
    this.refill();
    const want = Math.min(amount, this.capacity); // a request larger than the bucket would otherwise wait forever
    if (this.level >= want) {
      this.level -= want;
      return 0;
    }
    return Math.ceil((want - this.level) / this.perMs);
  }

  /** Corrects an earlier take by `delta` (positive: more was used than taken). */
  adjust(delta: number): void {
    if (!Number.isFinite(this.perMs)) return;
    this.refill();
    this.level = Math.min(this.capacity, this.level - delta);
  }

  available(): number {
    this.refill();
    return this.level;
  }
}

export interface Permit {
  /** Frees the concurrency slot and corrects the token bucket with the real usage (when known). */
  release(actualTokens?: number): void;
}

export class Limiter {
  readonly options: LimitOptions;
  private readonly requests: TokenBucket;
  private readonly tokens: TokenBucket;
  private active = 0;
  private readonly waiting: Array<() => void> = [];
  private pausedUntil = 0;
  /** High-water mark of requests in flight (for tests and stats). */
  maxActive = 0;

  constructor(options: Partial<LimitOptions> = {}, private readonly clock: Clock = realClock) {
    this.options = { ...DEFAULT_LIMITS, ...options };
    if (!(this.options.maxConcurrency >= 1)) throw new RangeError("maxConcurrency must be >= 1");
    this.requests = new TokenBucket(this.options.requestsPerMinute, this.options.burstMinutes, clock);
    this.tokens = new TokenBucket(this.options.tokensPerMinute, this.options.burstMinutes, clock);
  }

  get inFlight(): number {
    return this.active;
  }

  /** Every caller waits until `until` (clock ms) before its next request. */
  pauseUntil(until: number): void {
    this.pausedUntil = Math.max(this.pausedUntil, until);
  }

  /** Waits for a concurrency slot, the pause, one request and `estimatedTokens` tokens, in that order. */
  async acquire(estimatedTokens: number): Promise<Permit> {
    await this.slot();
    try {
      await this.rate(estimatedTokens);
    } catch (err) {
      this.freeSlot();
      throw err;
    }
    let released = false;
    return {
      release: (actualTokens) => {
        if (released) return;
        released = true;
        if (actualTokens !== undefined) this.tokens.adjust(actualTokens - Math.min(estimatedTokens, this.tokens.capacity));
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

  private async rate(estimatedTokens: number): Promise<void> {
    for (;;) {
      const pause = this.pausedUntil - this.clock.now();
      if (pause > 0) {
        await this.clock.sleep(pause);
        continue;
      }
      const requestWait = this.requests.tryTake(1);
      if (requestWait > 0) {
        await this.clock.sleep(requestWait);
        continue;
      }
      const tokenWait = this.tokens.tryTake(estimatedTokens);
      if (tokenWait > 0) {
        this.requests.adjust(-1); // give the request back while waiting for tokens
        await this.clock.sleep(tokenWait);
        continue;
      }
      return;
    }
  }
}

/** Rough token count before sending (~4 characters per token for English), plus the completion budget. */
export function estimateTokens(promptText: string, maxTokens: number, n: number): number {
  return Math.ceil(promptText.length / 4) + maxTokens * n;
}

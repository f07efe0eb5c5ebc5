import { describe, expect, test } from "bun:test";
import { Limiter, TokenBucket, type Clock } from "../../src/teacher/limits.ts";

/** Virtual time for one sequential caller: sleeping simply moves the clock forward. */
function manualClock(): Clock & { t: number } {
  const clock = { t: 0, now: () => clock.t, sleep: async (ms: number) => void (clock.t += ms) };
  return clock;
}

describe("TokenBucket", () => {
  test("starts full, refills at perMinute/60s, reports the wait for what is missing", () => {
    const clock = manualClock();
    const bucket = new TokenBucket(600, 0.01, clock); // capacity 6, 10 per second
    expect(bucket.capacity).toBe(6);
    for (let i = 0; i < 6; i++) expect(bucket.tryTake(1)).toBe(0);
    expect(bucket.tryTake(1)).toBe(100);
    clock.t += 100;
    expect(bucket.tryTake(1)).toBe(0);
    clock.t += 10_000;
    expect(bucket.available()).toBe(6); // never above capacity
  });

  test("usage corrections go into debt and are paid back over time", () => {
    const clock = manualClock();
    const bucket = new TokenBucket(6000, 1 / 60, clock); // capacity 100, 100 per second
    expect(bucket.tryTake(50)).toBe(0);
    bucket.adjust(+100); // the call really used 150
    expect(bucket.available()).toBe(-50);
    expect(bucket.tryTake(10)).toBe(600);
  });

  test("unlimited never waits", () => {
    const bucket = new TokenBucket(Infinity, 1, manualClock());
    for (let i = 0; i < 1000; i++) expect(bucket.tryTake(1e6)).toBe(0);
  });
});

describe("Limiter", () => {
  test("requests/min: in any stretch of virtual time, no more starts than the bucket allows", async () => {
    const clock = manualClock();
    const rpm = 120; // one every 500 ms
    const burst = 3;
    const limiter = new Limiter({ requestsPerMinute: rpm, burstMinutes: burst / rpm }, clock);
    const starts: number[] = [];
    for (let i = 0; i < 20; i++) {
      const permit = await limiter.acquire(0);
      starts.push(clock.now());
      permit.release();
    }
    for (let i = 0; i < starts.length; i++) {
      for (let j = i; j < starts.length; j++) {
        expect(j - i + 1).toBeLessThanOrEqual(burst + ((starts[j] - starts[i]) * rpm) / 60_000);
      }
    }
    // and it does not hold back more than it must: 20 starts need 17 refills
    expect(starts.at(-1)).toBeLessThanOrEqual(17 * 500);
  });

  test("tokens/min: estimated before, corrected by real usage after", async () => {
    const clock = manualClock();
    const limiter = new Limiter({ tokensPerMinute: 60_000, burstMinutes: 1000 / 60_000 }, clock); // 1000 cap, 1 per ms
    const first = await limiter.acquire(400);
    first.release(900); // used 500 more than estimated
    expect(clock.now()).toBe(0);
    const second = await limiter.acquire(400); // 100 left → must wait for 300 more
    expect(clock.now()).toBe(300);
    second.release(400);
  });

  test("a pause (Retry-After seen by anyone) holds every caller", async () => {
    const clock = manualClock();
    const limiter = new Limiter({}, clock);
    limiter.pauseUntil(2500);
    (await limiter.acquire(1)).release();
    expect(clock.now()).toBe(2500);
  });

  test("concurrency is never exceeded and every waiter gets through", async () => {
    const limiter = new Limiter({ maxConcurrency: 3 });
    let active = 0;
    let peak = 0;
    let finished = 0;
    await Promise.all(
      Array.from({ length: 25 }, async (_, i) => {
        const permit = await limiter.acquire(1);
        active++;
        peak = Math.max(peak, active);
        await Bun.sleep(i % 4);
        active--;
        finished++;
        permit.release();
      }),
    );
    expect(peak).toBe(3);
    expect(finished).toBe(25);
    expect(limiter.inFlight).toBe(0);
  });
});

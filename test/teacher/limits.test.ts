import { describe, expect, test } from "bun:test";
import { Limiter, SlidingWindow, type Clock } from "../../src/teacher/limits.ts";

/** Virtual time for one sequential caller: sleeping simply moves the clock forward. */
function manualClock(): Clock & { t: number } {
  const clock = { t: 0, now: () => clock.t, sleep: async (ms: number) => void (clock.t += ms) };
  return clock;
}

/** The most entries of `times` inside any half-open window [t, t + windowMs). */
function busiestWindow(times: number[], windowMs: number): number {
  const sorted = [...times].sort((a, b) => a - b);
  let most = 0;
  for (let i = 0, j = 0; j < sorted.length; j++) {
    while (sorted[j] - sorted[i] >= windowMs) i++;
    most = Math.max(most, j - i + 1);
  }
  return most;
}

describe("SlidingWindow", () => {
  test("takes up to the limit, then says when the oldest take leaves the window", () => {
    const clock = manualClock();
    const window = new SlidingWindow(3, clock); // 3 per minute
    for (let i = 0; i < 3; i++) {
      expect(window.waitFor(1)).toBe(0);
      window.take(1);
      clock.t += 1_000;
    }
    expect(window.waitFor(1)).toBe(57_000); // the take at t=0 expires at t=60 000
    clock.t = 60_000;
    expect(window.waitFor(1)).toBe(0);
    expect(window.inWindow()).toBe(2);
  });

  test("usage corrections count in the window until their entry expires", () => {
    const clock = manualClock();
    const window = new SlidingWindow(1_000, clock);
    const entry = window.take(400);
    window.adjust(entry, 900); // the call really used 900
    expect(window.inWindow()).toBe(900);
    expect(window.waitFor(400)).toBe(60_000);
    clock.t = 60_000;
    expect(window.waitFor(400)).toBe(0);
  });

  test("unlimited never waits", () => {
    const window = new SlidingWindow(Infinity, manualClock());
    for (let i = 0; i < 1000; i++) expect(window.waitFor(1e6)).toBe(0);
  });
});

describe("Limiter", () => {
  test("requests/min: never more than N starts in ANY sliding minute (a full bucket plus its refill let 2N through)", async () => {
    const clock = manualClock();
    const rpm = 5;
    const limiter = new Limiter({ requestsPerMinute: rpm }, clock);
    const starts: number[] = [];
    const arrivals: number[] = [];
    for (let i = 0; i < 23; i++) {
      arrivals.push(clock.now());
      const permit = await limiter.acquire(0);
      starts.push(clock.now());
      permit.release();
      clock.t += 7_000 * (i % 3); // callers arrive unevenly
    }
    expect(busiestWindow(starts, 60_000)).toBe(rpm);
    // and it holds back no more than it must: the first N at once, then each as the one N before it expires
    expect(starts.slice(0, rpm).every((t) => t < 60_000)).toBe(true);
    for (let i = rpm; i < starts.length; i++) expect(starts[i]).toBeLessThanOrEqual(Math.max(arrivals[i], starts[i - rpm] + 60_000));
  });

  test("tokens/min: never more than the allowance of estimates in any sliding minute", async () => {
    const clock = manualClock();
    const limiter = new Limiter({ tokensPerMinute: 1_000 }, clock);
    const taken: number[] = [];
    for (let i = 0; i < 12; i++) {
      (await limiter.acquire(300)).release(300);
      taken.push(clock.now());
    }
    expect(busiestWindow(taken, 60_000)).toBe(3); // 3 x 300 fit in 1000, 4 do not
  });

  test("tokens/min: estimated before, corrected by real usage after", async () => {
    const clock = manualClock();
    const limiter = new Limiter({ tokensPerMinute: 1_000 }, clock);
    const first = await limiter.acquire(400);
    first.release(900); // used 500 more than estimated
    expect(clock.now()).toBe(0);
    const second = await limiter.acquire(400); // 100 left in the window → wait until the first take expires
    expect(clock.now()).toBe(60_000);
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

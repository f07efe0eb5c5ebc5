/**
 * A small seeded PRNG: xoshiro128** (Blackman & Vigna) seeded through splitmix32, with Box-Muller normals.
 * Its whole state is four 32-bit words, so the trainer can checkpoint it (`state()`) and resume the exact stream
 * (`Rng.fromState`). Box-Muller's second value is deliberately thrown away so no hidden spare escapes the state.
 */
export type RngState = [number, number, number, number];

export class Rng {
  private s: Uint32Array;

  constructor(seed: number) {
    // splitmix32 spreads one seed over the four words (xoshiro must not start from all zeros)
    let x = seed >>> 0;
    const next = () => {
      x = (x + 0x9e3779b9) >>> 0;
      let z = x;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
      return (z ^ (z >>> 16)) >>> 0;
    };
    this.s = new Uint32Array([next(), next(), next(), next()]);
  }

  static fromState(state: RngState): Rng {
    if (state.length !== 4 || state.every((w) => w >>> 0 === 0)) throw new Error("invalid RNG state");
    const rng = new Rng(0);
    rng.s = new Uint32Array(state.map((w) => w >>> 0));
    return rng;
  }

  state(): RngState {
    return [this.s[0], this.s[1], this.s[2], this.s[3]];
  }

  /** Uniform 32-bit unsigned integer. */
  nextUint32(): number {
    const s = this.s;
    const result = Math.imul(rotl(Math.imul(s[1], 5), 7), 9) >>> 0;
    const t = s[1] << 9;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 11);
    return result;
  }

  /** Uniform in [0, 1), 32 bits of resolution. */
  uniform(): number {
    return this.nextUint32() / 4294967296;
  }

  /** Uniform integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.uniform() * n);
  }

  /** Standard normal sample times std (Box-Muller; 1 − u keeps the log argument in (0, 1]). */
  normal(std = 1): number {
    const u1 = 1 - this.uniform();
    const u2 = this.uniform();
    return std * Math.sqrt(-2 * Math.log(u1)) * Math.cos(2 * Math.PI * u2);
  }

  /** Fills `out` with normal samples of the given std. */
  fillNormal(out: Float32Array | Float64Array, std: number): void {
    for (let i = 0; i < out.length; i++) out[i] = this.normal(std);
  }

  /** In-place Fisher-Yates shuffle. */
  shuffle<T>(items: T[]): T[] {
    for (let i = items.length - 1; i > 0; i--) {
      const j = this.int(i + 1);
      [items[i], items[j]] = [items[j], items[i]];
    }
    return items;
  }
}

function rotl(x: number, k: number): number {
  return ((x << k) | (x >>> (32 - k))) >>> 0;
}

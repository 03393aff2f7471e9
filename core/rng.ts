/**
 * Seeded randomness, passed in explicitly everywhere (never Math.random): the same seed gives the
 * same draws on every runtime, which is what makes `seed` reproducible end to end.
 *
 * xoshiro128** (Blackman & Vigna) seeded through splitmix32; uniform doubles use 53 random bits.
 */
export interface Rng {
  /** Uniform in [0, 1). */
  uniform(): number;
}

export class Xoshiro128 implements Rng {
  private s: Uint32Array;

  constructor(seed: number | bigint) {
    let x = Number(BigInt.asUintN(32, BigInt(seed))) >>> 0;
    const splitmix32 = () => {
      x = (x + 0x9e3779b9) >>> 0;
      let z = x;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
      return (z ^ (z >>> 16)) >>> 0;
    };
    this.s = new Uint32Array([splitmix32(), splitmix32(), splitmix32(), splitmix32()]);
  }

  nextUint32(): number {
    const s = this.s;
    const result = Math.imul(rotl(Math.imul(s[1]!, 5) >>> 0, 7), 9) >>> 0;
    const t = (s[1]! << 9) >>> 0;
    s[2]! ^= s[0]!;
    s[3]! ^= s[1]!;
    s[1]! ^= s[2]!;
    s[0]! ^= s[3]!;
    s[2]! ^= t;
    s[3] = rotl(s[3]!, 11);
    return result;
  }

  uniform(): number {
    const hi = this.nextUint32() >>> 5; // 27 bits
    const lo = this.nextUint32() >>> 6; // 26 bits
    return (hi * 67108864 + lo) / 9007199254740992;
  }
}

const rotl = (x: number, k: number) => ((x << k) | (x >>> (32 - k))) >>> 0;

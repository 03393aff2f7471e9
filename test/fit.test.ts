import { describe, expect, it } from "vitest";
import { fitPools, type PoolSpec } from "../core/fit.ts";

// Three tasks, four candidate pools; S[task][pool] chosen so each policy has a different answer.
const pools: PoolSpec[] = [
  { id: "off", drafter: null, gamma: 0, proposalTemperature: null },
  { id: "base-g5", drafter: "base", gamma: 5, proposalTemperature: null },
  { id: "bal-g3", drafter: "balanced", gamma: 3, proposalTemperature: null },
  { id: "bal-g1", drafter: "balanced", gamma: 1, proposalTemperature: null },
];
const S: Record<string, Record<string, number>> = {
  en: { off: 1, "base-g5": 2.4, "bal-g3": 1.6, "bal-g1": 1.3 },
  de: { off: 1, "base-g5": 1.7, "bal-g3": 1.5, "bal-g1": 1.3 },
  ja: { off: 1, "base-g5": 0.8, "bal-g3": 1.2, "bal-g1": 1.25 },
};
const tasks = ["en", "de", "ja"] as const;
const speedup = (t: string, p: PoolSpec) => S[t]![p.id]!;

describe("fitPools", () => {
  it("throughput with one pool picks the pool with the best mean", () => {
    // means: off 1, base-g5 (2.4+1.7+.8)/3 = 1.633, bal-g3 1.433, bal-g1 1.283
    const f = fitPools({ tasks, candidates: pools, speedup, maxPools: 1, policy: { kind: "throughput" } });
    expect(f.pools.map((p) => p.id)).toEqual(["base-g5"]);
    expect(f.objective).toBeCloseTo(4.9 / 3, 12);
  });

  it("throughput with two pools gives ja its own pool", () => {
    // {base-g5, bal-g1}: 2.4, 1.7, 1.25 → 5.35/3 — the best pair
    const f = fitPools({ tasks, candidates: pools, speedup, maxPools: 2, policy: { kind: "throughput" } });
    expect(f.assignment).toEqual({ en: "base-g5", de: "base-g5", ja: "bal-g1" });
    expect(f.objective).toBeCloseTo(5.35 / 3, 12);
    expect(f.search).toBe("exhaustive");
  });

  it("maxmin with one pool picks the pool whose worst task is fastest", () => {
    // worst per pool: off 1, base-g5 .8, bal-g3 1.2, bal-g1 1.25 → bal-g1
    const f = fitPools({ tasks, candidates: pools, speedup, maxPools: 1, policy: { kind: "maxmin" } });
    expect(f.pools.map((p) => p.id)).toEqual(["bal-g1"]);
    expect(f.objective).toBeCloseTo(1.25, 12);
  });

  it("alpha-fair interpolates: a = 0 is throughput, large a is max-min", () => {
    const a0 = fitPools({ tasks, candidates: pools, speedup, maxPools: 1, policy: { kind: "alpha-fair", alpha: 0 } });
    expect(a0.pools[0]!.id).toBe("base-g5");
    const aBig = fitPools({ tasks, candidates: pools, speedup, maxPools: 1, policy: { kind: "alpha-fair", alpha: 30 } });
    expect(aBig.pools[0]!.id).toBe("bal-g1");
  });

  it("floor keeps every task within r of the best, then maximises throughput", () => {
    // r = .6 with two pools. Each task taking its fastest pool fails the floor (ja 1.25 vs en 2.4 = .52).
    //   {base-g5, bal-g1}: en must drop to bal-g1 → 1.3, 1.7, 1.25: ratio .735 ✓, sum 4.25
    //   {bal-g3, bal-g1}:  1.6, 1.5, 1.25: ratio .78 ✓, sum 4.35
    //   {base-g5, bal-g3}: en on bal-g3 1.6, de on base-g5 1.7, ja 1.2: ratio .706 ✓, sum 4.5 — the best
    const f = fitPools({ tasks, candidates: pools, speedup, maxPools: 2, policy: { kind: "floor", ratio: 0.6 } });
    expect(f.feasible).toBe(true);
    expect(Math.min(...Object.values(f.speedups)) / Math.max(...Object.values(f.speedups))).toBeGreaterThanOrEqual(0.6);
    expect(f.throughput).toBeCloseTo(4.5 / 3, 12);
    expect(f.assignment).toEqual({ en: "bal-g3", de: "base-g5", ja: "bal-g3" });
    // r = 1 with these numbers is impossible unless everything runs on the same speed: only "off" works
    const strict = fitPools({ tasks, candidates: pools, speedup, maxPools: 2, policy: { kind: "floor", ratio: 1 } });
    expect(strict.assignment).toEqual({ en: "off", de: "off", ja: "off" });
  });

  it("traffic weights move the throughput optimum", () => {
    // ja is 90% of traffic: one pool → bal-g1? means: base-g5 .05·2.4+.05·1.7+.9·.8 = .925; bal-g1 1.255; bal-g3 1.235
    const f = fitPools({ tasks, traffic: { en: 1, de: 1, ja: 18 }, candidates: pools, speedup, maxPools: 1, policy: { kind: "throughput" } });
    expect(f.pools[0]!.id).toBe("bal-g1");
  });

  it("greedy search is used when the pool sets are too many, and still finds a good fit", () => {
    const many: PoolSpec[] = Array.from({ length: 120 }, (_, i) => ({ id: `p${i}`, drafter: "d", gamma: 1 + (i % 6), proposalTemperature: null }));
    const f = fitPools({ tasks, candidates: many, speedup: (t, p) => 1 + ((Number(p.id.slice(1)) * (t.length + 3)) % 17) / 10, maxPools: 4, policy: { kind: "throughput" } });
    expect(f.search).toBe("greedy");
    expect(f.pools.length).toBeLessThanOrEqual(4);
    expect(f.objective).toBeCloseTo(2.6, 6); // every task can reach its maximum 1 + 16/10
  });

  it("rejects bad input with clear errors", () => {
    expect(() => fitPools({ tasks, candidates: pools, speedup, maxPools: 0, policy: { kind: "throughput" } })).toThrow(/max pools/);
    expect(() => fitPools({ tasks, candidates: pools, speedup, maxPools: 1, policy: { kind: "floor", ratio: 2 } })).toThrow(/floor/);
  });
});

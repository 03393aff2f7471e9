/**
 * The workerd suite: the real Worker (functions/worker.ts, wrangler.toml) inside workerd through
 * @cloudflare/vitest-pool-workers, against libSQL over HTTP (test/support/hrana.ts, started in
 * the globalSetup in Node) and trivial origins on loopback.
 *
 *   npx vitest run --config vitest.workers.config.ts
 */
import { cloudflareTest } from "@cloudflare/vitest-pool-workers";
import { defineConfig } from "vitest/config";

export default defineConfig({
  plugins: [
    cloudflareTest(({ inject }) => ({
      wrangler: { configPath: "./wrangler.toml" },
      miniflare: {
        bindings: {
          FAIRSPEC_DB_URL: inject("hranaUrl"),
          FAIRSPEC_DB_TOKEN: inject("dbToken"),
          ADMIN_TOKEN: inject("adminToken"),
          FAIRSPEC_EDGE_CONFIG: inject("edgeConfig"),
        },
      },
    })),
  ],
  test: {
    include: ["test/workers/**/*.test.ts"],
    globalSetup: ["./test/workers/global-setup.ts"],
    testTimeout: 60_000,
    hookTimeout: 60_000,
  },
});

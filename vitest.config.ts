import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    // The workerd suite runs under its own config (vitest.workers.config.ts).
    exclude: ["test/workers/**", "**/node_modules/**"],
    // Model-backed tests run real ONNX inference on a 2-core machine.
    testTimeout: 180_000,
    hookTimeout: 180_000,
    pool: "forks",
    maxWorkers: 2,
  },
});

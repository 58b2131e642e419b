import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts", "src/**/*.test.ts"],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    // ORT sessions use both cores; running test files in parallel only adds contention.
    fileParallelism: false,
  },
});

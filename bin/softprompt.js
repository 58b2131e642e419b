#!/usr/bin/env node
// The installed package runs the compiled CLI in dist/. In a checkout (src/ present, tsx installed
// as a dev dependency) it runs the TypeScript directly, so `npx softprompt` works right after `npm ci`.
import { existsSync } from "node:fs";

const source = new URL("../src/cli/main.ts", import.meta.url);
if (existsSync(source)) {
  const { register } = await import("tsx/esm/api");
  register();
  await import(source.href);
} else {
  await import("../dist/cli/main.js");
}

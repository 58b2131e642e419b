// The package as a user gets it: `npm pack`, `npm install ./softprompt-*.tgz` in a fresh folder (the npm
// registry only, with onnxruntime-node's CUDA download skipped as the README says), then the README's
// library example, run as written next to the example model, and `npx softprompt --version`.
import { describe, expect, it } from "vitest";
import { execFile } from "node:child_process";
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const run = promisify(execFile);

/** The first ```ts block of the README's "The library" section. */
function readmeLibraryExample(): string {
  const readme = readFileSync(join(ROOT, "README.md"), "utf8");
  const section = readme.slice(readme.indexOf("## The library"));
  const code = /```ts\n([\s\S]*?)```/.exec(section)?.[1];
  if (code === undefined) throw new Error("README.md: no ```ts block under ## The library");
  return code;
}

describe("the packed package", () => {
  it("installs from its tarball into a fresh folder; the README's library example and npx softprompt --version run there", async () => {
    const work = mkdtempSync(join(tmpdir(), "softprompt-package-"));
    try {
      // npm pack runs prepack (the build to dist/) and prints the tarball's name last.
      const packed = await run("npm", ["pack", "--pack-destination", work, "--silent"], { cwd: ROOT, encoding: "utf8" });
      const tarball = join(work, packed.stdout.trim().split("\n").pop()!);

      const app = join(work, "app");
      mkdirSync(app);
      writeFileSync(join(app, "package.json"), JSON.stringify({ name: "app", private: true, type: "module" }));
      const env = { ...process.env, ONNXRUNTIME_NODE_INSTALL: "skip" };
      await run("npm", ["install", tarball, "--no-audit", "--no-fund", "--prefer-offline"], { cwd: app, env, encoding: "utf8" });

      // The example's paths are relative to the project: give it the example model and data.
      cpSync(join(ROOT, "examples/models/tiny-tasks"), join(app, "examples/models/tiny-tasks"), { recursive: true });
      cpSync(join(ROOT, "examples/data"), join(app, "examples/data"), { recursive: true });
      writeFileSync(join(app, "example.mjs"), readmeLibraryExample());
      const example = await run(process.execPath, ["example.mjs"], { cwd: app, encoding: "utf8" });
      // console.log of the two generations: [ '…', '…' ]
      expect(example.stdout.trim()).toMatch(/^\[ '[^']*', '[^']*' \]$/);

      const version = await run("npx", ["--no-install", "softprompt", "--version"], { cwd: app, encoding: "utf8" });
      expect(version.stdout.trim()).toBe(JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")).version);
      // The server's playground page ships beside the compiled server.
      expect(existsSync(join(app, "node_modules/softprompt/dist/serve/public/index.html"))).toBe(true);
    } finally {
      rmSync(work, { recursive: true, force: true });
    }
  }, 600_000);
});

import { existsSync, promises as fsp } from "node:fs";
import { dirname, basename, join } from "node:path";
import { randomBytes } from "node:crypto";

/**
 * Write a file atomically: write a temporary sibling, fsync it, then rename over the target,
 * so a crash leaves either the old file or the new one, never half of one.
 */
export async function writeFileAtomic(path: string, data: string | Uint8Array): Promise<void> {
  const tmp = join(dirname(path), `.${basename(path)}.${randomBytes(6).toString("hex")}.tmp`);
  const handle = await fsp.open(tmp, "w");
  try {
    await handle.writeFile(data);
    await handle.sync();
  } finally {
    await handle.close();
  }
  try {
    await fsp.rename(tmp, path);
  } catch (err) {
    await fsp.rm(tmp, { force: true });
    throw err;
  }
}

/**
 * Fill a folder atomically: `fill` writes into a fresh staging folder beside `dir`, which then
 * replaces `dir` by rename; a failure leaves the old folder as it was.
 */
export async function writeDirAtomic(dir: string, fill: (staging: string) => Promise<void>): Promise<void> {
  const staging = join(dirname(dir), `.${basename(dir)}.${randomBytes(6).toString("hex")}.tmp`);
  await fsp.mkdir(staging, { recursive: true });
  try {
    await fill(staging);
    if (existsSync(dir)) {
      // Two renames: the old folder steps aside, the new one takes its name, then the old one goes.
      const old = `${staging}.old`;
      await fsp.rename(dir, old);
      await fsp.rename(staging, dir);
      await fsp.rm(old, { recursive: true, force: true });
    } else {
      await fsp.rename(staging, dir);
    }
  } catch (err) {
    await fsp.rm(staging, { recursive: true, force: true });
    throw err;
  }
}

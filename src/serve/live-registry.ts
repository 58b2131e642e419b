/**
 * The registry as one server sees it: every version loaded and checked against the served model,
 * kept up to date without a restart. Every add and remove moves a folder into or out of the registry's
 * top folder (staging and trash live there, see registry.ts), so one fs.watch on it sees them all; a
 * periodic rescan covers file systems where watching says nothing (NFS, some containers) and changes
 * made by hand. Replicas sharing one directory see each other's adds the same way. A version is
 * immutable once published, so a rescan only loads versions it has not seen and drops those gone.
 */
import { type FSWatcher, promises as fsp, watch } from "node:fs";
import type { Model } from "../models/index.js";
import { type LoadedAdapter, type LoadedTemplate, loadServable } from "../workflows.js";
import { type AdapterMetadata, type AdapterRef, listRegistry } from "./registry.js";
import { serveFail } from "./errors.js";

export interface ServedAdapter {
  name: string;
  version: number;
  metadata: AdapterMetadata;
  /** A template adapter renders each request through its template. */
  loaded: LoadedAdapter | LoadedTemplate;
}

export interface LiveRegistryOptions {
  root: string;
  model: Model;
  /** The model's name as adapters record it (for the check of PEFT-written adapters). */
  modelName: string;
  /** Rescan at least this often (ms); 0: only on watch events. */
  rescanMs: number;
  log: (level: "info" | "warn", message: string) => void;
}

export class LiveRegistry {
  /** `name` → version → adapter. */
  private readonly served = new Map<string, Map<number, ServedAdapter>>();
  /** `name@version` → why it is not served (e.g. made for another base model), so requests for it can say so. */
  private readonly refused = new Map<string, string>();
  /** Versions seen, by folder identity: a folder removed and published again under the same number is reloaded. */
  private readonly seen = new Map<string, string>();
  private watcher: FSWatcher | undefined;
  private timer: NodeJS.Timeout | undefined;
  private debounce: NodeJS.Timeout | undefined;
  private scanning: Promise<void> | undefined;
  private rescanWanted = false;
  private closed = false;

  private constructor(private readonly options: LiveRegistryOptions) {}

  /** Load the registry now, then follow its changes. */
  static async open(options: LiveRegistryOptions): Promise<LiveRegistry> {
    const registry = new LiveRegistry(options);
    await fsp.mkdir(options.root, { recursive: true });
    await registry.rescan();
    registry.watch();
    if (options.rescanMs > 0) {
      registry.timer = setInterval(() => void registry.rescan(), options.rescanMs);
      registry.timer.unref();
    }
    return registry;
  }

  /** The adapter a request names: its latest version unless one is given. */
  resolve(ref: AdapterRef, param = "model"): ServedAdapter {
    const versions = this.served.get(ref.name);
    const label = ref.version === undefined ? ref.name : `${ref.name}@${ref.version}`;
    const found = versions === undefined ? undefined : ref.version !== undefined ? versions.get(ref.version) : latest(versions);
    if (found !== undefined) return found;
    const refusal = [...this.refused].find(([key]) => key === label || (ref.version === undefined && key.startsWith(`${ref.name}@`)));
    if (refusal !== undefined) serveFail("model_not_found", `adapter ${refusal[0]} is in the registry but not served: ${refusal[1]}`, param);
    return serveFail("model_not_found", `the model ${JSON.stringify(label)} does not exist: not the base model and not an adapter in the registry (GET /v1/models lists them)`, param);
  }

  /** Every served adapter, by name, each name's latest version first. */
  list(): { name: string; versions: ServedAdapter[] }[] {
    return [...this.served.keys()].sort().map((name) => ({ name, versions: [...this.served.get(name)!.values()].sort((a, b) => b.version - a.version) }));
  }

  get refusedCount(): number {
    return this.refused.size;
  }

  /** Bring the view up to date with the directory; concurrent calls share one scan, and a call during a scan runs one more after it. */
  rescan(): Promise<void> {
    if (this.scanning !== undefined) {
      this.rescanWanted = true;
      return this.scanning;
    }
    this.scanning = this.scanOnce()
      .catch((err) => this.options.log("warn", `registry rescan failed: ${(err as Error).message}`))
      .finally(() => {
        this.scanning = undefined;
        if (this.rescanWanted && !this.closed) {
          this.rescanWanted = false;
          void this.rescan();
        }
      });
    return this.scanning;
  }

  close(): void {
    this.closed = true;
    clearInterval(this.timer);
    clearTimeout(this.debounce);
    this.watcher?.close();
  }

  private async scanOnce(): Promise<void> {
    const { root, model, modelName, log } = this.options;
    const listing = await listRegistry(root);
    const present = new Set<string>();
    for (const problem of listing.problems) {
      const key = `problem:${problem.path}`;
      present.add(key);
      if (!this.seen.has(key)) log("warn", `registry: ${problem.path}: ${problem.message}`);
      this.seen.set(key, problem.message);
    }
    for (const entry of listing.adapters) {
      const key = `${entry.name}@${entry.version}`;
      const stat = await fsp.stat(entry.dir).catch(() => undefined);
      if (stat === undefined) continue; // removed since the listing
      const identity = `${stat.ino}:${entry.created}`;
      present.add(key);
      if (this.seen.get(key) === identity) continue;
      this.seen.set(key, identity);
      try {
        const loaded = await loadServable(entry.dir, model, modelName);
        loaded.warnings.forEach((w) => log("warn", `registry: ${key}: ${w}`));
        if (!this.served.has(entry.name)) this.served.set(entry.name, new Map());
        this.served.get(entry.name)!.set(entry.version, { name: entry.name, version: entry.version, metadata: entry, loaded });
        this.refused.delete(key);
        log("info", `registry: serving ${key} (${entry.method})`);
      } catch (err) {
        // An adapter for another base model, or a corrupt one: refused, and said so to whoever asks for it.
        this.refused.set(key, (err as Error).message);
        log("warn", `registry: refused ${key}: ${(err as Error).message}`);
      }
    }
    for (const key of [...this.seen.keys()]) {
      if (present.has(key)) continue;
      this.seen.delete(key);
      this.refused.delete(key);
      const [name, version] = key.split("@");
      const versions = this.served.get(name);
      if (versions?.delete(Number(version))) log("info", `registry: removed ${key}`);
      if (versions?.size === 0) this.served.delete(name);
    }
  }

  /** Any event on the registry's folder schedules a rescan shortly after, so a burst of events costs one scan. */
  private watch(): void {
    try {
      this.watcher = watch(this.options.root, { persistent: false }, () => {
        clearTimeout(this.debounce);
        this.debounce = setTimeout(() => void this.rescan(), 50);
      });
      this.watcher.on("error", () => this.watcher?.close());
    } catch {
      // No watching here (no inotify left): the periodic rescan still sees changes.
    }
  }
}

function latest(versions: Map<number, ServedAdapter>): ServedAdapter | undefined {
  let best: ServedAdapter | undefined;
  for (const a of versions.values()) if (best === undefined || a.version > best.version) best = a;
  return best;
}

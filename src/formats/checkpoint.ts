/**
 * A Hugging Face checkpoint folder as files: `model.safetensors`, or shards listed in
 * `model.safetensors.index.json`, opened together as one set of named tensors.
 */
import { existsSync, promises as fsp } from "node:fs";
import { basename, join } from "node:path";
import { z } from "zod";
import { fail } from "../util/errors.js";
import { SafetensorsFile, type TensorInfo } from "./safetensors.js";

export const SINGLE_FILE = "model.safetensors";
export const INDEX_FILE = "model.safetensors.index.json";

const indexSchema = z.looseObject({ weight_map: z.record(z.string(), z.string()) });

/** The shard index: tensor name -> shard file name, with every shard a plain file name in the same folder. */
export async function readShardIndex(path: string): Promise<Map<string, string>> {
  let json: unknown;
  try {
    json = JSON.parse(await fsp.readFile(path, "utf8"));
  } catch (err) {
    fail("file", `cannot read the shard index (${(err as Error).message})`, { file: path }, err);
  }
  const parsed = indexSchema.safeParse(json);
  if (!parsed.success) {
    fail("file", 'expected {"weight_map": {tensor name: shard file}}', { file: path, field: "weight_map" });
  }
  const weightMap = new Map(Object.entries(parsed.data.weight_map));
  for (const [tensor, shard] of weightMap) {
    // Shard names come from the file: refuse anything that could point outside the folder.
    if (shard === "" || shard !== basename(shard) || shard === "." || shard === ".." || shard.includes("\\")) {
      fail("file", `shard ${JSON.stringify(shard)} must be a file name in the same folder`, { file: path, tensor });
    }
  }
  return weightMap;
}

/** The safetensors files of one checkpoint folder, as one set of named tensors. */
export class Checkpoint {
  readonly dir: string;
  /** model.safetensors, or the shard index: the file to name when a tensor is missing. */
  readonly source: string;
  readonly files: readonly SafetensorsFile[];
  private readonly fileByTensor: Map<string, SafetensorsFile>;

  constructor(dir: string, source: string, files: SafetensorsFile[], fileByTensor: Map<string, SafetensorsFile>) {
    this.dir = dir;
    this.source = source;
    this.files = files;
    this.fileByTensor = fileByTensor;
  }

  tensorNames(): string[] {
    return [...this.fileByTensor.keys()];
  }

  fileOf(name: string): SafetensorsFile {
    const file = this.fileByTensor.get(name);
    return file ?? fail("weights", "no such tensor in the checkpoint", { file: this.source, tensor: name });
  }

  info(name: string): TensorInfo {
    return this.fileOf(name).info(name);
  }

  readFloat32(name: string, scratch?: Float32Array): Promise<Float32Array> {
    return this.fileOf(name).readFloat32(name, scratch);
  }

  async close(): Promise<void> {
    await Promise.all(this.files.map((f) => f.close()));
  }
}

/** Open `model.safetensors`, or every shard named by `model.safetensors.index.json`. */
export async function openCheckpoint(dir: string): Promise<Checkpoint> {
  const single = join(dir, SINGLE_FILE);
  if (existsSync(single)) {
    const file = await SafetensorsFile.open(single);
    return new Checkpoint(dir, single, [file], new Map(file.tensorNames().map((n) => [n, file])));
  }
  const index = join(dir, INDEX_FILE);
  if (!existsSync(index)) {
    const legacy = existsSync(join(dir, "pytorch_model.bin"))
      ? " (pytorch_model.bin is not read: convert it to safetensors)"
      : "";
    fail("file", `no ${SINGLE_FILE} or ${INDEX_FILE} in the model folder${legacy}`, { file: dir });
  }
  const weightMap = await readShardIndex(index);
  const shardNames = [...new Set(weightMap.values())].sort();
  const missing = shardNames.filter((s) => !existsSync(join(dir, s)));
  if (missing.length > 0) fail("file", `shards listed in the index are missing: ${missing.join(", ")}`, { file: index });

  const files: SafetensorsFile[] = [];
  try {
    const fileByTensor = new Map<string, SafetensorsFile>();
    for (const shard of shardNames) {
      const file = await SafetensorsFile.open(join(dir, shard));
      files.push(file);
      for (const name of file.tensorNames()) {
        const other = fileByTensor.get(name);
        if (other !== undefined) {
          fail("file", `tensor is stored twice, also in ${basename(other.path)}`, { file: file.path, tensor: name });
        }
        fileByTensor.set(name, file);
      }
    }
    for (const [name, shard] of weightMap) {
      if (fileByTensor.get(name)?.path !== join(dir, shard)) {
        fail("file", `the index places this tensor in ${shard}, but that shard does not hold it`, {
          file: index,
          tensor: name,
        });
      }
    }
    return new Checkpoint(dir, index, files, fileByTensor);
  } catch (err) {
    await Promise.all(files.map((f) => f.close()));
    throw err;
  }
}

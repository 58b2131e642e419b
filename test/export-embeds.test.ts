// The vLLM hand-off: `export-embeds` writes the completions request whose prompt_embeds (torch.save, base64)
// the reference stack decoded, as vLLM does, into the exact [n + T, hidden] tensor that transformers + PEFT
// compute (fixture: test/fixtures/reference/vllm_prompt_embeds.py); adapters that are not input vectors are refused.
import { describe, expect, it } from "vitest";
import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { exportEmbeds, type VllmCompletionRequest } from "../src/export/vllm.js";
import { torchSave } from "../src/export/torch-save.js";
import { loadModel } from "../src/models/index.js";
import { SoftpromptError } from "../src/util/errors.js";
import { adapterDir, modelDir } from "./helpers/golden.js";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const BIN = join(ROOT, "bin/softprompt.js");
interface FixtureModel {
  model: string;
  adapter: string;
  input_ids: number[];
  shape: [number, number];
  values: number[];
  requests: Record<"float32" | "bfloat16", VllmCompletionRequest>;
}
const fixture = JSON.parse(readFileSync(join(ROOT, "test/fixtures/reference/vllm_prompt_embeds.json"), "utf8")) as {
  input: string;
  max_tokens: number;
  models: Record<"gpt2" | "llama", FixtureModel>;
};

/** The bytes of one stored entry of a zip, and where they start (a reader as small as the writer, for the test). */
function zipEntry(zip: Uint8Array, name: string): { offset: number; data: Uint8Array } {
  const view = new DataView(zip.buffer, zip.byteOffset, zip.byteLength);
  for (let at = 0; view.getUint32(at, true) === 0x04034b50; ) {
    const size = view.getUint32(at + 18, true);
    const nameLength = view.getUint16(at + 26, true);
    const extraLength = view.getUint16(at + 28, true);
    const offset = at + 30 + nameLength + extraLength;
    if (new TextDecoder().decode(zip.subarray(at + 30, at + 30 + nameLength)) === name) return { offset, data: zip.subarray(offset, offset + size) };
    at = offset + size;
  }
  throw new Error(`no entry ${name}`);
}

describe("export-embeds (vLLM --enable-prompt-embeds)", () => {
  for (const arch of ["gpt2", "llama"] as const) {
    const expected = fixture.models[arch];
    for (const dtype of ["float32", "bfloat16"] as const) {
      it(`${arch} ${dtype}: the request equals the one torch.load(weights_only=True) read as the exact tensor`, async () => {
        const result = await exportEmbeds({
          model: join(ROOT, expected.model),
          adapter: join(ROOT, expected.adapter),
          input: fixture.input,
          maxTokens: fixture.max_tokens,
          dtype,
          servedModelName: expected.model,
        });
        expect(result.request).toEqual(expected.requests[dtype]);
        expect(result.shape).toEqual(expected.shape);
        expect(result.inputTokens).toBe(expected.input_ids.length);
        expect(result.virtualTokens + result.inputTokens).toBe(expected.shape[0]);
      });
    }

    it(`${arch}: the tensor's bytes are the soft prompt, then the input's token embeddings, 64-byte aligned`, () => {
      const zip = Buffer.from(expected.requests.float32.prompt_embeds, "base64");
      const { offset, data } = zipEntry(zip, "archive/data/0");
      expect(offset % 64).toBe(0);
      const values = new Float32Array(data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength));
      expect(Array.from(values)).toEqual(expected.values.map(Math.fround));
      // The same tensor written again gives the same bytes (nothing depends on the clock or the host).
      expect(Buffer.from(torchSave(values, expected.shape)).equals(zip)).toBe(true);
    });
  }

  it("writes the request to --output and says what it holds", async () => {
    const dir = mkdtempSync(join(tmpdir(), "softprompt-export-"));
    const output = join(dir, "request.json");
    const result = await exportEmbeds({ model: modelDir("gpt2"), adapter: adapterDir("gpt2", "prompt_tuning"), input: "hello there", output });
    expect(JSON.parse(readFileSync(output, "utf8"))).toEqual(result.request);
    expect(result.request).toMatchObject({ model: modelDir("gpt2"), max_tokens: 32, temperature: 0 });
    expect(result.warnings.join()).toMatch(/without a fingerprint/);
    rmSync(dir, { recursive: true });
  });

  it("refuses prefix and LoRA adapters, naming the method", async () => {
    const model = await loadModel(modelDir("llama"));
    const run = (method: string) => exportEmbeds({ model: modelDir("llama"), adapter: adapterDir("llama", method), input: "hi" }, model);
    await expect(run("prefix_tuning")).rejects.toThrow(/is a prefix adapter \(PREFIX_TUNING\); vLLM's prompt embeddings take only adapters that place vectors before the text/);
    await expect(run("lora")).rejects.toThrow(/LORA/);
    await expect(run("prefix_tuning")).rejects.toMatchObject({ code: "usage", place: { field: "adapter" } });
  });

  it("refuses an empty input and one past the model's positions", async () => {
    const model = await loadModel(modelDir("gpt2"));
    const run = (input: string) => exportEmbeds({ model: modelDir("gpt2"), adapter: adapterDir("gpt2", "prompt_tuning"), input }, model);
    await expect(run("")).rejects.toThrow(/the input is empty/);
    const long = run("word ".repeat(200));
    await expect(long).rejects.toBeInstanceOf(SoftpromptError);
    await expect(long).rejects.toThrow(/the model has 128 positions/);
  });

  it("from the command line: the request on stdout; a prefix adapter is a usage error naming --adapter", async () => {
    const cli = (args: string[]) =>
      new Promise<{ code: number; stdout: string }>((resolve) =>
        execFile(process.execPath, [BIN, "export-embeds", "--model", modelDir("llama"), "--input", "hi", ...args], { encoding: "utf8" }, (err, stdout) =>
          resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout }),
        ),
      );
    const ok = await cli(["--adapter", adapterDir("llama", "prompt_tuning"), "--max-tokens", "4"]);
    expect(ok.code).toBe(0);
    expect(JSON.parse(ok.stdout)).toMatchObject({ model: modelDir("llama"), max_tokens: 4, prompt_embeds: expect.stringMatching(/^UEsDB/) });
    const bad = await cli(["--adapter", adapterDir("llama", "prefix_tuning"), "--json"]);
    expect(bad.code).toBe(2);
    expect(JSON.parse(bad.stdout).error).toMatchObject({ code: "usage", field: "--adapter", message: expect.stringMatching(/prefix adapter/) });
  }, 30_000);
});

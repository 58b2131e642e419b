// The LoRA seam: ForwardArgs.hooks.linear sees every projection of each golden model by its checkpoint
// name, leaves the model alone when it returns y, changes it where it changes y, and (as LoRA) reproduces
// real PEFT's LoRA logits.
import { describe, expect, it } from "vitest";
import type { Value } from "../../src/graph/ir.js";
import * as o from "../../src/graph/ops.js";
import * as nn from "../../src/graph/nn.js";
import type { CausalLM, ForwardHooks } from "../../src/models/causal-lm.js";
import { canonicalName } from "../../src/models/checkpoint.js";
import { arangePositions, attentionPattern, idsTensor } from "../../src/models/inputs.js";
import { Program } from "../../src/runtime/session.js";
import { ARCHS, type Arch, loadGoldenModel, maxAbsDiff, readCase, rows } from "../helpers/golden.js";

/** Every projection module of the 2-layer golden models, in the order a forward pass reaches them. */
const PROJECTIONS: Record<Arch, string[]> = {
  gpt2: [0, 1].flatMap((i) => ["attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"].map((m) => `h.${i}.${m}`)),
  llama: llamaProjections(),
  qwen2: llamaProjections(),
};
function llamaProjections(): string[] {
  const modules = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"];
  return [0, 1].flatMap((i) => modules.map((m) => `model.layers.${i}.${m}`));
}

/** Logits and hidden states of the golden "forward" case's inputs, with the given hooks. */
async function runForward(lm: CausalLM, arch: Arch, hooks?: ForwardHooks) {
  const golden = await readCase(arch, "forward");
  const ids = rows(golden.get("input_ids")!);
  const mask = rows(golden.get("attention_mask")!);
  const [B, T] = [ids.length, ids[0].length];
  const inputIds = o.input("input_ids", "int64", ["batch", "seq"]);
  const positions = o.input("position_ids", "int64", ["batch", "seq"]);
  const allowed = o.input("allowed", "bool", ["batch", 1, "seq", "seq"]);
  const { hidden, hiddenStates } = lm.forward({ inputsEmbeds: lm.embed(inputIds), positions, allowed, hooks });
  const logits = lm.lmHead(o.reshape(hidden, [-1, lm.config.hiddenSize]));
  const program = await Program.compile({ logits, afterBlock0: hiddenStates[1] });
  const out = await program.run({
    ...lm.weights.feeds(),
    input_ids: idsTensor(ids),
    position_ids: arangePositions(B, T),
    allowed: attentionPattern(mask, T),
  });
  return { logits: out.logits.data as Float32Array, afterBlock0: out.afterBlock0.data as Float32Array, dims: [B, T, lm.config.vocabSize] };
}

describe.each(ARCHS)("%s forward hooks", (arch) => {
  it("the linear hook sees every projection once, by name, with its input and output widths", async () => {
    const lm = await loadGoldenModel(arch);
    const seen: string[] = [];
    lm.forward({
      inputsEmbeds: o.input("embeds", "float32", [1, 3, lm.config.hiddenSize]),
      positions: o.input("positions", "int64", [1, 3]),
      allowed: o.input("allowed", "bool", [1, 1, 3, 3]),
      hooks: {
        linear: (module, x, y) => {
          seen.push(module);
          const widths = [x.shape.at(-1), y.shape.at(-1)] as number[];
          expect(widths.sort((a, b) => a - b)).toEqual([...lm.weights.tensor(`${module}.weight`).shape].sort((a, b) => a - b));
          return y;
        },
      },
    });
    expect(seen).toEqual(PROJECTIONS[arch]);
  });

  it("an identity hook leaves the logits bit-identical; one that moves a module's output changes them", async () => {
    const lm = await loadGoldenModel(arch);
    const plain = await runForward(lm, arch);
    const identity = await runForward(lm, arch, { linear: (_module, _x, y) => y });
    expect(Buffer.from(identity.logits.buffer).equals(Buffer.from(plain.logits.buffer))).toBe(true);

    // Layer 1's first projection (q|k|v, or q). Not the last one: a constant added to the residual stream
    // right before the final LayerNorm would be normalised away.
    const target = PROJECTIONS[arch][PROJECTIONS[arch].length / 2];
    const shifted = await runForward(lm, arch, { linear: (module, _x, y) => (module === target ? o.add(y, 0.5) : y) });
    expect(Buffer.from(shifted.afterBlock0.buffer).equals(Buffer.from(plain.afterBlock0.buffer))).toBe(true); // before the target
    expect(maxAbsDiff(shifted.logits, plain.logits, plain.dims)).toBeGreaterThan(1e-3);
  });

  it("as LoRA (y + (alpha/r)·B·A·x on PEFT's weights) it gives PEFT's LoRA logits", async () => {
    const lm = await loadGoldenModel(arch);
    const golden = await readCase(arch, "lora");
    const scale = 8 / 4; // the adapters' lora_alpha / r
    const param = (name: string) => {
      const t = golden.get(name)!;
      return o.constant(t.data as Float32Array, t.shape);
    };
    // PEFT names a module base_model.model.<stored name>; lora_A is [r, in], lora_B [out, r] in every family.
    const adapted = new Map<string, { a: Value; b: Value }>();
    for (const name of golden.keys()) {
      const m = /^param\.base_model\.model\.(.+)\.lora_A\.weight$/.exec(name);
      if (m) adapted.set(canonicalName(lm.config, m[1]), { a: param(name), b: param(name.replace("lora_A", "lora_B")) });
    }
    expect(adapted.size).toBeGreaterThan(0);
    const hooks: ForwardHooks = {
      linear: (module, x, y) => {
        const lora = adapted.get(module);
        if (lora === undefined) return y;
        const down = nn.linear(x, lora.a, undefined, "out_in"); // [..., r]
        return o.add(y, o.mul(nn.linear(down, lora.b, undefined, "out_in"), scale));
      },
    };
    const ids = rows(golden.get("input_ids")!);
    const mask = rows(golden.get("attention_mask")!);
    const [B, T] = [ids.length, ids[0].length];
    const inputIds = o.input("input_ids", "int64", ["batch", "seq"]);
    const { hidden } = lm.forward({
      inputsEmbeds: lm.embed(inputIds),
      positions: o.input("position_ids", "int64", ["batch", "seq"]),
      allowed: o.input("allowed", "bool", ["batch", 1, "seq", "seq"]),
      hooks,
    });
    const program = await Program.compile({ logits: lm.lmHead(o.reshape(hidden, [-1, lm.config.hiddenSize])) });
    const out = await program.run({
      ...lm.weights.feeds(),
      input_ids: idsTensor(ids),
      position_ids: arangePositions(B, T),
      allowed: attentionPattern(mask, T),
    });
    const want = golden.get("logits")!;
    const valid = (r: number, t: number) => mask[r][t] === 1;
    expect(maxAbsDiff(out.logits.data as Float32Array, want.data as Float32Array, want.shape, valid)).toBeLessThan(1e-4);
  });
});

/**
 * P-tuning's prompt encoder (Liu et al. 2021, "GPT Understands, Too"), as PEFT 0.21 builds it
 * (peft/tuners/p_tuning/model.py): n input vectors `embedding.weight` [n, d] pass through
 *  - MLP:  Linear(d, h) → ReLU → Linear(h, h) → ReLU → Linear(h, d), or
 *  - LSTM: a bidirectional LSTM(d → h, encoder_num_layers layers) → Linear(2h, 2h) → ReLU → Linear(2h, d),
 * and give the n virtual-token embeddings [n, d]. The math is written once over `TensorOps`, so the
 * same code builds the training graph (differentiated by autodiff) and computes the output on the host
 * for the saved adapter and for inference. Tensor names are PEFT's module names.
 */
import { Rng } from "../../util/rng.js";
import type { Params } from "../method.js";
import type { EncoderType } from "./config.js";

/** The few operations the encoder needs, over 2-D tensors [rows, cols] (a bias is a vector [cols]). */
export interface TensorOps<T> {
  /** x [m, in] → x·Wᵀ + b [m, out], with W [out, in] as nn.Linear stores it. */
  linear(x: T, weight: T, bias: T): T;
  /** Elementwise; `b` may be one row, added to every row of `a`. */
  add(a: T, b: T): T;
  mul(a: T, b: T): T;
  relu(x: T): T;
  sigmoid(x: T): T;
  tanh(x: T): T;
  rows(x: T, start: number, end: number): T;
  cols(x: T, start: number, end: number): T;
  concatRows(xs: T[]): T;
  concatCols(xs: T[]): T;
  zeros(rows: number, cols: number): T;
}

export interface EncoderSpec {
  type: EncoderType;
  numVirtual: number;
  tokenDim: number;
  hidden: number;
  /** LSTM layers (the MLP has a fixed two). */
  numLayers: number;
}

/** The encoder's input table: PEFT's `embedding.weight`. */
export const INPUT = "embedding.weight";

const DIRECTIONS = ["", "_reverse"] as const;

/** Every tensor of the encoder with its shape, in PEFT's named_parameters order. */
export function encoderShapes({ type, numVirtual: n, tokenDim: d, hidden: h, numLayers }: EncoderSpec): Map<string, number[]> {
  const shapes = new Map<string, number[]>([[INPUT, [n, d]]]);
  const linear = (name: string, out: number, inp: number) => {
    shapes.set(`${name}.weight`, [out, inp]);
    shapes.set(`${name}.bias`, [out]);
  };
  if (type === "mlp") {
    linear("mlp_head.0", h, d);
    linear("mlp_head.2", h, h);
    linear("mlp_head.4", d, h);
    return shapes;
  }
  for (let l = 0; l < numLayers; l++) {
    for (const dir of DIRECTIONS) {
      shapes.set(`lstm_head.weight_ih_l${l}${dir}`, [4 * h, l === 0 ? d : 2 * h]);
      shapes.set(`lstm_head.weight_hh_l${l}${dir}`, [4 * h, h]);
      shapes.set(`lstm_head.bias_ih_l${l}${dir}`, [4 * h]);
      shapes.set(`lstm_head.bias_hh_l${l}${dir}`, [4 * h]);
    }
  }
  linear("mlp_head.0", 2 * h, 2 * h);
  linear("mlp_head.2", d, 2 * h);
  return shapes;
}

/**
 * Initial values as PyTorch draws them (not the same numbers): nn.Embedding N(0, 1); nn.Linear weight
 * and bias U(±1/√fan_in); nn.LSTM every tensor U(±1/√h).
 */
export function initEncoder(spec: EncoderSpec, seed: number): Params {
  const rng = new Rng(seed);
  const shapes = encoderShapes(spec);
  const params: Params = new Map();
  for (const [name, shape] of shapes) {
    const data = new Float32Array(shape.reduce((a, b) => a * b, 1));
    if (name === INPUT) data.forEach((_, i) => (data[i] = rng.normal()));
    else {
      // A Linear's bias has its weight's fan-in.
      const fanIn = name.startsWith("lstm_head.") ? spec.hidden : shapes.get(name.replace(/\.bias$/, ".weight"))![1];
      const bound = 1 / Math.sqrt(fanIn);
      data.forEach((_, i) => (data[i] = (2 * rng.next() - 1) * bound));
    }
    params.set(name, { shape, data });
  }
  return params;
}

/** The encoder's output [n, d] from its tensors (`param` gives each by name). */
export function encode<T>(ops: TensorOps<T>, param: (name: string) => T, spec: EncoderSpec): T {
  const input = param(INPUT); // [n, d]
  const layer = (x: T, name: string) => ops.linear(x, param(`${name}.weight`), param(`${name}.bias`));
  if (spec.type === "mlp") {
    const hidden = ops.relu(layer(ops.relu(layer(input, "mlp_head.0")), "mlp_head.2")); // [n, h]
    return layer(hidden, "mlp_head.4");
  }
  let x = input;
  for (let l = 0; l < spec.numLayers; l++) {
    // Each layer reads the whole sequence both ways; its output is [forward | backward] [n, 2h].
    x = ops.concatCols(DIRECTIONS.map((dir) => lstmDirection(ops, x, param, `l${l}${dir}`, spec, dir === "_reverse")));
  }
  return layer(ops.relu(layer(x, "mlp_head.0")), "mlp_head.2");
}

/**
 * One direction of one LSTM layer, unrolled over the n steps (PyTorch's nn.LSTM, gates in its order
 * i, f, g, o; h₀ = c₀ = 0): c ← f⊙c + i⊙g, h ← o⊙tanh(c). Returns h of every step in sequence order [n, h].
 */
function lstmDirection<T>(ops: TensorOps<T>, x: T, param: (name: string) => T, suffix: string, spec: EncoderSpec, reverse: boolean): T {
  const h = spec.hidden;
  const fromInput = ops.linear(x, param(`lstm_head.weight_ih_${suffix}`), param(`lstm_head.bias_ih_${suffix}`)); // [n, 4h]: every step's input part
  const wHh = param(`lstm_head.weight_hh_${suffix}`);
  const bHh = param(`lstm_head.bias_hh_${suffix}`);
  let state = ops.zeros(1, h);
  let cell = ops.zeros(1, h);
  const out: T[] = new Array<T>(spec.numVirtual);
  for (let s = 0; s < spec.numVirtual; s++) {
    const t = reverse ? spec.numVirtual - 1 - s : s;
    const gates = ops.add(ops.rows(fromInput, t, t + 1), ops.linear(state, wHh, bHh)); // [1, 4h]
    const gate = (k: number) => ops.cols(gates, k * h, (k + 1) * h);
    cell = ops.add(ops.mul(ops.sigmoid(gate(1)), cell), ops.mul(ops.sigmoid(gate(0)), ops.tanh(gate(2))));
    state = ops.mul(ops.sigmoid(gate(3)), ops.tanh(cell));
    out[t] = state;
  }
  return ops.concatRows(out);
}

/**
 * Reverse-mode autodiff over the IR. Only values on a path from `wrt` to the loss are
 * differentiated, so frozen weights cost no gradient work at all; the result is more graph,
 * compiled and run like any other.
 */
import { fail } from "../util/errors.js";
import { type Value, formatShape, isFloat, topoSort } from "./ir.js";
import { add, constant, sameShape } from "./ops.js";
import { vjp, type VjpRule } from "./vjp.js";

/** d loss / d each of `wrt`, for a scalar (or single-element) float loss. */
export function grad(loss: Value, wrt: readonly Value[]): Value[] {
  if (!isFloat(loss.dtype)) fail("grad", `the loss must be a float, got ${loss.dtype}`);
  if (!loss.shape.every((d) => d === 1)) fail("grad", `the loss must have one element, got shape ${formatShape(loss.shape)}`);

  const order = topoSort([loss]);
  const wanted = new Set(wrt.map((w) => w.id));
  // A value needs a gradient iff it lies on a path from some wrt value to the loss.
  const onPath = new Set<number>();
  for (const v of order) {
    if (wanted.has(v.id) || v.inputs.some((i) => onPath.has(i.id))) onPath.add(v.id);
  }
  for (const w of wrt) {
    if (!onPath.has(w.id)) {
      const name = w.op === "input" ? `input "${(w as Value<"input">).attrs.name}"` : `value #${w.id} (${w.op})`;
      fail("grad", `the loss does not depend on ${name}; its gradient would be zero everywhere`);
    }
  }

  const grads = new Map<number, Value>();
  grads.set(loss.id, onesLike(loss));
  for (let i = order.length - 1; i >= 0; i--) {
    const y = order[i];
    const g = grads.get(y.id);
    if (g === undefined || y.inputs.length === 0) continue;
    const rule = vjp[y.op] as VjpRule<typeof y.op>;
    const inputGrads = rule(g, y as never);
    if (inputGrads.length !== y.inputs.length) {
      fail("grad", `rule for ${y.op} returned ${inputGrads.length} gradients for ${y.inputs.length} inputs`, { op: y.op });
    }
    y.inputs.forEach((x, k) => {
      const gx = inputGrads[k];
      if (gx === null || !onPath.has(x.id)) return;
      if (!sameShape(gx.shape, x.shape)) {
        fail("grad", `rule for ${y.op} gave input ${k} a gradient of shape ${formatShape(gx.shape)}, expected ${formatShape(x.shape)}`, { op: y.op });
      }
      const prev = grads.get(x.id);
      grads.set(x.id, prev === undefined ? gx : add(prev, gx)); // a value used twice sums its gradients
    });
  }
  return wrt.map((w) => grads.get(w.id)!);
}

function onesLike(loss: Value): Value {
  const data = loss.dtype === "float64" ? new Float64Array(1).fill(1) : new Float32Array(1).fill(1);
  return constant(data, loss.shape, loss.dtype);
}

/**
 * Reverse-mode autodiff over the IR. Only values on a path from `wrt` to the loss are
 * differentiated, so frozen weights cost no gradient work at all; the result is more graph,
 * compiled and run like any other.
 */
import { fail } from "../util/errors.js";
import { type Value, formatShape, isFloat, topoSort } from "./ir.js";
import { add, concat, constant, pad, sameShape } from "./ops.js";
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

  // Each value's gradient contributions, summed once all are in (reverse topological order sees to that).
  const parts = new Map<number, Value[]>();
  parts.set(loss.id, [onesLike(loss)]);
  for (let i = order.length - 1; i >= 0; i--) {
    const y = order[i];
    const contributions = parts.get(y.id);
    if (contributions === undefined || y.inputs.length === 0) continue;
    const g = sumGradients(contributions);
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
      const prev = parts.get(x.id);
      if (prev === undefined) parts.set(x.id, [gx]);
      else prev.push(gx); // a value used twice sums its gradients
    });
  }
  return wrt.map((w) => sumGradients(parts.get(w.id)!));
}

/**
 * The sum of a value's gradient contributions. The gradients of slices that tile a value are zero-padded
 * windows of it: adjacent windows along one axis are joined by one concat, not summed as padded copies.
 */
function sumGradients(contributions: Value[]): Value {
  const pads = contributions.filter((v): v is Value<"pad"> => v.op === "pad");
  const terms = contributions.filter((v) => v.op !== "pad");
  for (const axis of new Set(pads.map((p) => p.attrs.axis))) {
    const windows = pads.filter((p) => p.attrs.axis === axis).sort((a, b) => a.attrs.before - b.attrs.before);
    let run: Value<"pad">[] = [];
    const flush = () => {
      if (run.length === 1) terms.push(run[0]);
      else if (run.length > 1) {
        const joined = concat(run.map((p) => p.inputs[0]), axis);
        const { before } = run[0].attrs;
        const { after } = run[run.length - 1].attrs;
        terms.push(before === 0 && after === 0 ? joined : pad(joined, axis, before, after));
      }
      run = [];
    };
    for (const w of windows) {
      const last = run[run.length - 1];
      if (last !== undefined && last.attrs.before + (last.inputs[0].shape[axis] as number) !== w.attrs.before) flush();
      run.push(w);
    }
    flush();
  }
  return terms.reduce((a, b) => add(a, b));
}

function onesLike(loss: Value): Value {
  const data = loss.dtype === "float64" ? new Float64Array(1).fill(1) : new Float32Array(1).fill(1);
  return constant(data, loss.shape, loss.dtype);
}

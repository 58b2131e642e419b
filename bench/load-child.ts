// Child process of the load benchmark: load a model folder, run one forward, report times and peak RSS.
import * as o from "../src/graph/ops.js";
import { loadModel } from "../src/models/index.js";
import { arangePositions, attentionPattern, idsTensor } from "../src/models/inputs.js";
import { Program } from "../src/runtime/session.js";
import { peakRssMb } from "./common.js";

const t0 = performance.now();
const model = await loadModel(process.argv[2]);
const loaded = performance.now();
const { lm } = model;
const ids = o.input("input_ids", "int64", ["batch", "seq"]);
const { hidden } = lm.forward({
  inputsEmbeds: lm.embed(ids),
  positions: o.input("position_ids", "int64", ["batch", "seq"]),
  allowed: o.input("allowed", "bool", ["batch", 1, "seq", "seq"]),
});
const logits = lm.lmHead(o.reshape(hidden, [-1, lm.config.hiddenSize]));
const program = await Program.compile({ logits });
const row = [464, 2068, 7586, 21831, 18045, 625, 262, 16931];
await program.run({
  ...lm.weights.feeds(),
  input_ids: idsTensor([row]),
  position_ids: arangePositions(1, row.length),
  allowed: attentionPattern([row.map(() => 1)], row.length),
});
const done = performance.now();
console.log(JSON.stringify({ load_s: (loaded - t0) / 1000, first_forward_s: (done - loaded) / 1000, peak_rss_mb: peakRssMb() }));

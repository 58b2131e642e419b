/** Datasets in the formats people already have: JSONL and CSV, as prompt/completion, chat or plain text. */
export { readExamples, parseJsonl, parseCsvExamples } from "./read.js";
export { parseExample, EXPECTED_SHAPES, type Example, type ChatTurn, type ParseOptions, type Role, type SourceLine } from "./example.js";
export { datasetTasks } from "./tasks.js";
export { parseCsv, type CsvRecord } from "./csv.js";
export {
  tokenizeExample,
  tokenizeExamples,
  IGNORE_INDEX,
  type DataTokenizer,
  type TokenizeOptions,
  type TokenizedExample,
} from "./tokenize.js";
export { splitTrainValid, type SplitOptions } from "./split.js";
export { makeBatches, type Batch, type BatchOptions } from "./batch.js";
export { rowSignals, type RowSignals } from "./signals.js";

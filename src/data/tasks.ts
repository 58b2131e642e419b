import { fail } from "../util/errors.js";
import type { Example } from "./example.js";

/**
 * The tasks of a multi-task dataset: `known` when given (every row's task must be one of them), else the
 * rows' tasks sorted (so they do not depend on the order of the rows). Every example must name a task;
 * the first that does not, or names one not known, fails with its file and line.
 */
export function datasetTasks(examples: readonly Example[], taskField: string, known?: readonly string[]): string[] {
  const tasks = new Set<string>();
  for (const example of examples) {
    const place = { ...example.source, field: taskField };
    if (example.task === undefined) fail("data", `the row names no task; multi-task training needs each row's task in the field "${taskField}"`, place);
    if (known !== undefined && !known.includes(example.task)) fail("data", `task "${example.task}" is not one of the tasks given: ${known.join(", ")}`, place);
    tasks.add(example.task);
  }
  return known !== undefined ? [...known] : [...tasks].sort();
}

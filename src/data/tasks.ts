import { fail } from "../util/errors.js";
import type { Example } from "./example.js";

/**
 * The tasks of a multi-task dataset, sorted (so they do not depend on the order of the rows); every
 * example must name one, and the first that does not fails with its file and line.
 */
export function datasetTasks(examples: readonly Example[], taskField: string): string[] {
  const tasks = new Set<string>();
  for (const example of examples) {
    if (example.task === undefined) {
      fail("data", `the row names no task; multi-task training needs each row's task in the field "${taskField}"`, { ...example.source, field: taskField });
    }
    tasks.add(example.task);
  }
  return [...tasks].sort();
}

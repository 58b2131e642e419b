/**
 * Reviewing in the terminal, one answer at a time: g good, b bad, e edit (type the right answer; the
 * answer becomes bad with that correction), s skip, q quit. The file is saved after every verdict, so
 * quitting (or Ctrl-C, or the input ending) loses nothing and the next run resumes at the first
 * unreviewed answer. Lines are read with Node's readline, so any stream can drive it (tests feed one).
 */
import { createInterface } from "node:readline";
import type { Readable, Writable } from "node:stream";
import type { ReviewItem } from "./review.js";

export interface Terminal {
  input: Readable;
  output: Writable;
}

const KEYS = "[g]ood  [b]ad  [e]dit (type the right answer)  [s]kip  [q]uit";

/** Ask about every unreviewed item in order; returns how many got a verdict and whether the person quit. */
export async function reviewInteractively(items: ReviewItem[], io: Terminal, save: (items: ReviewItem[]) => Promise<void>): Promise<{ reviewed: number; quit: boolean }> {
  const rl = createInterface({ input: io.input, terminal: false });
  const lines = rl[Symbol.asyncIterator]();
  const ask = async (question: string): Promise<string | undefined> => {
    io.output.write(question);
    const next = await lines.next();
    return next.done ? undefined : next.value.trim();
  };
  const pending = items.filter((it) => it.verdict === "");
  let reviewed = 0;
  try {
    for (const [n, it] of pending.entries()) {
      io.output.write(`\n(${n + 1} of ${pending.length}) input line ${it.line}\n  input:  ${JSON.stringify(it.prompt)}\n  answer: ${JSON.stringify(it.answer)}\n${KEYS}\n`);
      let key = await ask("> ");
      while (key !== undefined && !["g", "b", "e", "s", "q"].includes(key)) key = await ask(`"${key}" is not a key; ${KEYS}\n> `);
      if (key === undefined || key === "q") return { reviewed, quit: true };
      if (key === "s") continue;
      if (key === "e") {
        let right = await ask("right answer: ");
        while (right === "") right = await ask("the right answer cannot be empty (or q to quit): ");
        if (right === undefined || right === "q") return { reviewed, quit: true };
        Object.assign(it, { verdict: "bad", correction: right });
      } else Object.assign(it, { verdict: key === "g" ? "good" : "bad", correction: null });
      await save(items);
      reviewed++;
    }
    return { reviewed, quit: false };
  } finally {
    rl.close();
  }
}

/**
 * Checks of what the user typed against the model and the data, made before the long work starts:
 * texts the tokenizer cannot encode (a warning: the model sees <unk>), and --choice lists that
 * cannot match a data line's answer (an error: accuracy would be 0 for a reason unrelated to the model).
 */
import { resolveModelDir } from "../formats/hub.js";
import { loadTokenizer, type Tokenizer } from "../tokenizer/index.js";
import { readExamples } from "../data/index.js";
import { fail } from "../util/errors.js";
import { warn } from "./output.js";

/** The words of `text` that encode to the tokenizer's unknown token (none when it has no such token). */
export function unknownWords(tokenizer: Pick<Tokenizer, "unkTokenId" | "encode">, text: string): string[] {
  const unk = tokenizer.unkTokenId;
  if (unk === undefined) return [];
  const hasUnk = (s: string) => tokenizer.encode(s, { addSpecialTokens: false }).includes(unk);
  if (!hasUnk(text)) return [];
  // Name the whitespace-separated words that hold the unknown pieces; the whole text if no single word does.
  const words = [...new Set(text.split(/\s+/).filter((w) => w !== "" && hasUnk(w)))];
  return words.length > 0 ? words : [text];
}

/** Warns, per flag, about texts with unknown tokens; loads only the tokenizer, and only when there is text to check. */
export async function warnUnknownTokens(model: string, texts: [flag: string, text: string | undefined][]): Promise<void> {
  const given = texts.filter((t): t is [string, string] => t[1] !== undefined && t[1] !== "");
  if (given.length === 0) return;
  const tokenizer = await loadTokenizer(await resolveModelDir(model));
  for (const [flag, text] of given) {
    const words = unknownWords(tokenizer, text);
    if (words.length > 0) {
      const unkText = tokenizer.unkTokenId === undefined ? "unknown" : (tokenizer.idToToken(tokenizer.unkTokenId) ?? "unknown");
      warn(`${flag} ${JSON.stringify(text)}: ${words.map((w) => JSON.stringify(w)).join(", ")} ${words.length === 1 ? "is" : "are"} not in the model's vocabulary; the model sees ${unkText} instead`);
    }
  }
}

/** Every prompt/completion line's answer must be one of the choices (compared as eval compares them: trimmed). */
export async function checkAnswersAmongChoices(dataFile: string, choices: readonly string[]): Promise<void> {
  const allowed = new Set(choices.map((c) => c.trim()));
  for (const ex of await readExamples(dataFile)) {
    if (ex.kind === "prompt" && !allowed.has(ex.completion.trim())) {
      fail("data", `the answer ${JSON.stringify(ex.completion)} is not among the choices (${choices.map((c) => JSON.stringify(c)).join(", ")}); add it with --choice or fix the line`, {
        file: ex.source?.file ?? dataFile,
        line: ex.source?.line,
      });
    }
  }
}

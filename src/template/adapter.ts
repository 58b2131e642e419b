/**
 * A template and where its soft vectors are: a trained template adapter (its folder keeps the template
 * text and code values in adapter_config.json), or a template alone (written text and slots only).
 */
import { join } from "node:path";
import { fail } from "../util/errors.js";
import { parseWith } from "../formats/json.js";
import { type Adapter, loadAdapter } from "../peft/adapter.js";
import { TABLE, layoutOf, readTemplate, templateMethod } from "../peft/template/index.js";
import { templateConfigSchema, type TemplateConfig } from "../peft/template/config.js";
import type { DataTokenizer } from "../data/tokenize.js";
import { parseTemplate, type Template } from "./parse.js";
import type { TableLayout } from "./layout.js";

export interface TemplateAdapter {
  template: Template;
  layout: TableLayout;
  /** The trained table (method "template"); absent for a template without soft spans. */
  adapter?: Adapter;
}

type Encoder = Pick<DataTokenizer, "encode">;

/** The template adapter in `dir`; undefined when the folder's adapter was not trained with a template. */
export async function loadTemplateAdapter(dir: string, tokenizer: Encoder): Promise<TemplateAdapter | undefined> {
  const loaded = await loadAdapter(dir);
  if (typeof (loaded.config as { template?: unknown }).template !== "string") return undefined;
  const file = join(dir, "adapter_config.json");
  const config = parseWith(templateConfigSchema, loaded.config, "adapter", { file }) as TemplateConfig;
  // Saved as PROMPT_TUNING (PEFT-loadable), the table is prompt tuning's "prompt".
  const table = loaded.params.get(TABLE) ?? loaded.params.get("prompt")!;
  const adapter: Adapter = { ...loaded, method: templateMethod, config, params: new Map([[TABLE, table]]) };
  const template = parseTemplate(config.template, `${file} (template)`);
  const codeValues = Object.entries(config.code_values).flatMap(([name, values]) => values.map((v) => `${name}=${v}`));
  const { layout } = layoutOf(template, codeValues, tokenizer);
  if (layout.rows !== config.num_virtual_tokens) {
    fail("adapter", `the template lays out ${layout.rows} soft vectors, but the adapter holds ${config.num_virtual_tokens}`, { file, field: "num_virtual_tokens" });
  }
  return { template, layout, adapter };
}

/** A template file used without an adapter: only written text and slots (soft spans need training). */
export function plainTemplate(file: string, tokenizer: Encoder): TemplateAdapter {
  const template = readTemplate(file);
  const soft = template.segments.find((s) => s.kind === "soft" || s.kind === "code");
  if (soft !== undefined && "at" in soft) {
    fail("usage", `column ${soft.at.column}: this template has soft spans or codes, which need a trained adapter (--adapter)`, { file, line: soft.at.line });
  }
  return layoutOf(template, [], tokenizer);
}

/**
 * The train command's method options, generated from every registered method's options schema (see
 * src/peft/method.ts): a key becomes `--kebab-case`, its description the help text, its type the parser
 * (numbers checked against the schema, enums as choices, booleans as switches, string lists repeatable),
 * and `meta({ implies })` a commander implication. Values are passed only when typed, so each method's
 * own defaults apply; --help lists them per method.
 */
import { Option } from "commander";
import type { z } from "zod";
import { methodByName, registeredMethods } from "../peft/index.js";
import { kebabFlag } from "../train/trainer.js";
import { list, schemaNumber } from "./options.js";

/** Array options read better singular on the command line: `--label a --label b` gathers `labels`. */
export const FLAG_NAMES: Record<string, string> = { labels: "--label" };

export const flagOfSetting = (key: string) => FLAG_NAMES[key] ?? kebabFlag(key);

interface OptionInfo {
  key: string;
  schema: z.ZodType;
  /** The innermost type, under default/optional. */
  inner: z.ZodType;
  description?: string;
  implies?: Record<string, unknown>;
  /** Per method that has the option, its default (if any). */
  defaults: [method: string, value: unknown][];
}

function unwrap(schema: z.ZodType): z.ZodType {
  let s = schema;
  while (s.def.type === "default" || s.def.type === "optional" || s.def.type === "nullable") s = (s.def as unknown as { innerType: z.ZodType }).innerType;
  return s;
}

/** Every method option by key, merged across methods (one flag per key, whichever methods share it). */
export function methodOptionInfos(): OptionInfo[] {
  const byKey = new Map<string, OptionInfo>();
  for (const name of registeredMethods()) {
    for (const [key, schema] of Object.entries(methodByName(name).options.shape) as [string, z.ZodType][]) {
      const meta = (schema.meta() ?? {}) as { description?: string; implies?: Record<string, unknown> };
      const info = byKey.get(key) ?? { key, schema, inner: unwrap(schema), description: meta.description, implies: meta.implies, defaults: [] };
      if (schema.def.type === "default") info.defaults.push([name, (schema.def as unknown as { defaultValue: unknown }).defaultValue]);
      byKey.set(key, info);
    }
  }
  return [...byKey.values()];
}

/** commander options for every method option (no commander defaults: the chosen method's schema fills them). */
export function methodOptions(): Option[] {
  return methodOptionInfos().map((info) => {
    const flag = flagOfSetting(info.key);
    const shown = [...new Set(info.defaults.map(([, v]) => JSON.stringify(v)))];
    const defaults =
      info.defaults.length === 0 ? "" : shown.length === 1 ? ` (default: ${shown[0]})` : ` (default: ${info.defaults.map(([m, v]) => `${JSON.stringify(v)} with ${m}`).join(", ")})`;
    const help = `${info.description ?? info.key}${defaults}`;
    const type = info.inner.def.type;
    let option: Option;
    if (type === "boolean") option = new Option(flag, help);
    else if (type === "enum") option = new Option(`${flag} <value>`, help).choices(Object.keys((info.inner.def as unknown as { entries: Record<string, string> }).entries));
    else if (type === "number") option = new Option(`${flag} <n>`, help).argParser(schemaNumber(info.schema, flag));
    else if (type === "array") option = new Option(`${flag} <value>`, `${help} (repeat)`).argParser(list);
    else option = new Option(`${flag} <value>`, help);
    if (info.implies !== undefined) option.implies(info.implies);
    return option;
  });
}

/** The method settings the user typed, by schema key (commander names `--label` `label`); `keep` may drop some. */
export function typedMethodSettings(opts: Record<string, unknown>, keep: (attribute: string, key: string) => boolean = () => true): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const { key } of methodOptionInfos()) {
    const attribute = flagOfSetting(key).slice(2).replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
    if (opts[attribute] !== undefined && keep(attribute, key)) out[key] = opts[attribute];
  }
  return out;
}

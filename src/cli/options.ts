/**
 * Option values as the user typed them: parsers that check ranges (read from the training schema
 * where the option is a training setting), defaults taken from that schema for --help, and the
 * translation of a library error's field name (`batchSize`) into the flag the user typed (`--batch-size`).
 */
import { type Command, InvalidArgumentError } from "commander";
import type { z } from "zod";
import { SoftpromptError } from "../util/errors.js";
import { trainerSettingsSchema, type TrainerSettings } from "../train/config.js";

const settingSchemas: Record<string, z.ZodType> = trainerSettingsSchema.shape;

/** Every trainer setting's default, read from the schema (settings without one, like `steps`, are absent). */
export const TRAIN_DEFAULTS = trainerSettingsSchema.parse({}) as Partial<TrainerSettings>;

type NumericSetting = { [K in keyof TrainerSettings]-?: NonNullable<TrainerSettings[K]> extends number ? K : never }[keyof TrainerSettings];

/** A number for a trainer setting, checked against the setting's schema (integer, bounds). */
export function setting(field: NumericSetting, flag: string) {
  return schemaNumber(settingSchemas[field], flag);
}

/** A number checked against a schema (integer, bounds), with the flag in every message. */
export function schemaNumber(schema: z.ZodType, flag: string) {
  // A fraction tells whether the setting takes only integers (then "> 0" reads "≥ 1").
  const integerOnly = schema.safeParse(1e6 + 0.5).error?.issues.some(isIntegerIssue) ?? false;
  return (value: string): number => {
    const n = toNumber(flag, value, integerOnly ? "an integer" : "a number");
    const parsed = schema.safeParse(n);
    if (!parsed.success) throw new InvalidArgumentError(describeIssue(flag, parsed.error.issues[0], value, integerOnly));
    return n;
  };
}

/** An integer at least `min`. */
export const integer = (flag: string, min = Number.NEGATIVE_INFINITY) => (value: string) => {
  const n = toNumber(flag, value, "an integer");
  if (!Number.isInteger(n)) throw new InvalidArgumentError(`${flag} must be an integer, got "${value}"`);
  if (n < min) throw new InvalidArgumentError(`${flag} must be ≥ ${min}, got ${value}`);
  return n;
};

/** A finite number. */
export const number = (flag: string) => (value: string) => toNumber(flag, value);

export const list = (value: string, previous: string[] = []) => [...previous, value];

function toNumber(flag: string, value: string, kind: "a number" | "an integer" = "a number"): number {
  const n = Number(value);
  if (value.trim() === "" || !Number.isFinite(n)) throw new InvalidArgumentError(`${flag} must be ${kind}, got "${value}"`);
  return n;
}

const isIntegerIssue = (issue: z.core.$ZodIssue) => issue.code === "invalid_type" && issue.expected === "int";

function describeIssue(flag: string, issue: z.core.$ZodIssue, value: string, integerOnly: boolean): string {
  if (isIntegerIssue(issue)) return `${flag} must be an integer, got "${value}"`;
  if (issue.code === "too_small") {
    const min = Number(issue.minimum);
    // An integer above 0 is one of at least 1: say it the way users count.
    const bound = issue.inclusive ? `≥ ${min}` : integerOnly ? `≥ ${min + 1}` : `> ${min}`;
    return `${flag} must be ${bound}, got ${value}`;
  }
  if (issue.code === "too_big") return `${flag} must be ${issue.inclusive ? "≤" : "<"} ${Number(issue.maximum)}, got ${value}`;
  return `${flag}: ${issue.message}, got ${value}`;
}

/** Where a field name differs from the option's name beyond camelCase (a repeated flag gathers a list). */
const FIELD_ALIASES: Record<string, string> = { labels: "label", inputs: "input", choices: "choice" };

/**
 * A library error about one of the command's options, restated with the flag: camelCase names in the
 * message become flags, the error's `field` (reported as `flag`) is the flag, and errors in the settings
 * the user typed (not in a file) become usage errors (exit 2).
 */
export function withFlagNames(err: unknown, command: Command | undefined): { error: unknown; flag?: string } {
  if (!(err instanceof SoftpromptError) || command === undefined || err.place.field === undefined) return { error: err };
  const flags = new Map(command.options.filter((o) => o.long !== undefined).map((o) => [o.attributeName(), o.long!]));
  const flagOf = (name: string) => flags.get(FIELD_ALIASES[name] ?? name);
  // "requests[0].topP" is the option topP of one request.
  const name = err.place.field.split(".").pop()!.replace(/\[\d+\]$/, "");
  const flag = flagOf(name);
  if (flag === undefined) return { error: err };
  const fromOptions = err.place.file === undefined || err.place.file === "training options";
  let message = ownMessage(err);
  message = message.startsWith(`${name} `) ? `${flag}${message.slice(name.length)}` : message;
  message = message.replace(/\b[a-z]+(?:[A-Z][a-z]*)+\b/g, (word) => flagOf(word) ?? word);
  if (!message.includes(flag)) message = `${flag}: ${message}`;
  const { field: _field, ...place } = err.place;
  const code = fromOptions && (err.code === "config" || err.code === "usage") ? "usage" : err.code;
  return { error: new SoftpromptError(code, message, fromOptions ? { ...place, file: undefined } : place, { cause: err }), flag };
}

/** The message without the "file, field ...: " prefix that SoftpromptError puts before it. */
function ownMessage(err: SoftpromptError): string {
  const prefix = new SoftpromptError(err.code, "", err.place).message;
  return prefix.length > 0 && err.message.startsWith(prefix) ? err.message.slice(prefix.length) : err.message;
}

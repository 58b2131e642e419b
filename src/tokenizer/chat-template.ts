import { Template } from "@huggingface/jinja";
import { fail } from "../util/errors.js";
import type { TokenizerConfig } from "./config.js";

export interface ChatMessage {
  role: string;
  content: string;
}

export interface ChatTemplateOptions {
  /** Append the header that opens an assistant turn, so generation continues as the assistant. */
  addGenerationPrompt?: boolean;
}

/** The special-token strings that transformers exposes to chat templates as variables. */
export interface TemplateTokens {
  bos_token?: string;
  eos_token?: string;
  unk_token?: string;
  pad_token?: string;
}

/**
 * Pick the template to use. A list of named templates (transformers' multi-template form)
 * yields the one named "default", as transformers does when no name is asked for; failing that, the first.
 */
export function pickChatTemplate(chatTemplate: TokenizerConfig["chat_template"]): string | undefined {
  if (chatTemplate === null || chatTemplate === undefined) return undefined;
  if (typeof chatTemplate === "string") return chatTemplate;
  return (chatTemplate.find((t) => t.name === "default") ?? chatTemplate[0])?.template;
}

/** Compile once; a template that does not parse fails at load time, naming the file it came from. */
export function compileChatTemplate(source: string, file: string): Template {
  try {
    return new Template(source);
  } catch (err) {
    fail("tokenizer", `chat_template does not parse as Jinja: ${(err as Error).message}`, { file, field: "chat_template" }, err);
  }
}

export function renderChatTemplate(
  template: Template,
  messages: readonly ChatMessage[],
  tokens: TemplateTokens,
  { addGenerationPrompt = false }: ChatTemplateOptions,
  file: string,
): string {
  try {
    return template.render({ ...tokens, messages, add_generation_prompt: addGenerationPrompt });
  } catch (err) {
    // Templates signal unsupported conversations with raise_exception ("roles must alternate", ...).
    fail("tokenizer", `chat_template failed to render: ${(err as Error).message}`, { file, field: "chat_template" }, err);
  }
}

// The template language and its use: parse, lay out, render, evaluate and generate (see README: Templates).
export { parseTemplate, TemplateError, type Template, type Segment } from "./parse.js";
export { tableLayout, codeValuesOf, type TableLayout } from "./layout.js";
export { renderExample, renderPrompt, type RenderOptions, type RenderedRow } from "./render.js";
export { loadTemplateAdapter, plainTemplate, type TemplateAdapter } from "./adapter.js";
export { renderRows, templateTokenizer, evaluateTemplate, generateWithTemplate, templateEngineRows, type TemplateEngineRow, type TemplateEvalOptions, type TemplateEvalResult, type TemplateGenerateOptions } from "./run.js";
export { parseCodeFlags, codeValueSettings } from "./codes.js";

/**
 * The built-in architecture families, registered once on first import. Adding a family: its own file
 * ending in `registerArchitecture(...)`, and one import line here. Look architectures up through this
 * module (not registry.ts directly) so the built-in ones are always registered first.
 */
import "./gpt2.js";
import "./llama.js";
import "./qwen3.js";
import "./gemma.js";
import "./gpt-neox.js";
import "./olmo2.js";
import "./phi3.js";
import "./smollm3.js";

export { architectureFor, registeredModelTypes, type Architecture, type PositionKind, type TensorSpec } from "./registry.js";

/**
 * Parameter-efficient methods: the interface and registry (method.ts), the shared PEFT adapter folder
 * (adapter.ts), and the methods themselves — one folder each, registered in methods.ts.
 */
import "./methods.js";

export { type PeftMethod, type Params, type Param, type Adaptation, type PeftConfigBase, registerMethod, methodByName, methodByPeftType, registeredMethods } from "./method.js";
export { type Adapter, saveAdapter, loadAdapter, checkAdapterFits, baseFingerprint, paramsDigest, BASE_FINGERPRINT, type BaseModel } from "./adapter.js";

// The built-in methods: one line each; importing a method's folder registers it (see method.ts).
import "./prompt-tuning/index.js";
import "./prefix-tuning/index.js";
import "./cartridge/index.js";
import "./p-tuning/index.js";
import "./multitask/index.js";
import "./lora/index.js";
import "./template/index.js";

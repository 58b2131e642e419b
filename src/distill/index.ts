// Prompt distillation: a long hard prompt compressed into a few soft vectors (or a key/value prefix).
export { distill, DISTILL_DEFAULTS, INTO, DISTILL_INITS, type DistillOptions, type DistillReport, type StudentReport, type Into } from "./distill.js";
export { klObjective, distillGraph, distillExample } from "./objective.js";
export { klSum, type TeacherValues } from "./kl.js";
export { teacherTargets, type TeacherSettings, type TeacherTargets, type TeacherRow, type TeacherWork } from "./teacher.js";
export { agreementWith, type Agreement } from "./agreement.js";
export { prefillSecondsPerRequest } from "../eval/prefill.js";
export { distillView, DISTILL_RECORD, type DistillRecord } from "./report.js";

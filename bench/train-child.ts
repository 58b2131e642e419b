// Child process of the training benchmark: one model shape, result as one JSON line.
import { benchShape } from "./train.js";

console.log(JSON.stringify(await benchShape(process.argv[2])));

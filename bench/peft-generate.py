"""PEFT + transformers greedy generate on demand, for bench/decode.ts to time beside its own generate runs.

    python peft-generate.py BENCH_PEFT_PY MODEL [THREADS]

The model and prompt-tuning adapter are shared/reference/bench_peft.py's (its MODELS and peft_config are imported
from it), and generate is called as its --generate does: model.eval(), sdpa attention, torch.set_num_threads(THREADS),
torch.no_grad(), greedy, min_new_tokens = max_new_tokens, pad_token_id=0, on rows of 16 input ids drawn from 0..999.
Reads one "generate BATCH NEW" line per call on stdin (BATCH rows, NEW new tokens) and prints one JSON line per call,
{"seconds", "new_tokens"}, so that another process can run its own generate calls in between. Prints one JSON line
when ready, and {"done", "max_rss_mb"} at the end.
"""

import json
import resource
import sys
import time

import torch

from peft_model import load_peer

INPUT = 16


def main():
    script, name = sys.argv[1:3]
    threads = int(sys.argv[3]) if len(sys.argv) > 3 else 2
    bp, pm, _ = load_peer(script, name, "prompt", threads)
    g = torch.Generator().manual_seed(1)
    inputs = {}

    def generate(batch, new):
        if batch not in inputs:
            inputs[batch] = torch.randint(0, 1000, (batch, INPUT), generator=g)
        ids = inputs[batch]
        with torch.no_grad():
            out = pm.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=new,
                              min_new_tokens=new, do_sample=False, pad_token_id=0)
        return out.shape[1] - INPUT

    print(json.dumps({
        "ready": True, "model": name, "method": "prompt", "virtual_tokens": bp.VIRTUAL, "input_tokens": INPUT,
        "torch": torch.__version__, "transformers": bp.transformers.__version__, "peft": bp.peft.__version__,
        "threads": torch.get_num_threads(),
    }), flush=True)
    for line in sys.stdin:
        words = line.split()
        if len(words) != 3 or words[0] != "generate":
            break
        batch, new = int(words[1]), int(words[2])
        t = time.perf_counter()
        made = generate(batch, new)
        print(json.dumps({"seconds": time.perf_counter() - t, "new_tokens": made}), flush=True)
    print(json.dumps({"done": True, "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}), flush=True)


if __name__ == "__main__":
    main()

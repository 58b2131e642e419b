"""Real PEFT training steps on demand, for bench/methods.ts to interleave with its own steps one by one.

    python peft-steps.py BENCH_PEFT_PY MODEL METHOD [THREADS]

The model, adapter, batch and optimizer are shared/reference/bench_peft.py's (its MODELS and peft_config are
imported from it, and its step is repeated here as it is there: zero_grad + forward with labels + backward +
AdamW(lr=1e-3).step(), model.eval(), sdpa attention, torch.set_num_threads(THREADS)). bench_peft.py runs its
steps in one loop; this runs one step per "step" line read on stdin, so another process can run its own steps
in between. Prints one JSON line when ready, then one per step: {"seconds", "loss"}.
"""

import json
import resource
import sys
import time

import torch

from peft_model import load_peer


def main():
    script, name, method = sys.argv[1:4]
    threads = int(sys.argv[4]) if len(sys.argv) > 4 else 2
    bp, pm, cfg = load_peer(script, name, method, threads)
    text = bp.TEXT + bp.VIRTUAL if method == "lora" else bp.TEXT
    trainable = [p for p in pm.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(trainable, lr=1e-3)
    g = torch.Generator().manual_seed(1)
    input_ids = torch.randint(0, cfg.vocab_size, (bp.BATCH, text), generator=g)
    attention_mask = torch.ones_like(input_ids)
    labels = input_ids.clone()

    def step():
        opt.zero_grad(set_to_none=True)
        out = pm(input_ids=input_ids, attention_mask=attention_mask, labels=labels)
        out.loss.backward()
        opt.step()
        return float(out.loss.detach())

    print(json.dumps({
        "ready": True, "model": name, "method": method, "text_tokens": text,
        "trainable_params": sum(p.numel() for p in trainable),
        "torch": torch.__version__, "transformers": bp.transformers.__version__, "peft": bp.peft.__version__,
        "threads": torch.get_num_threads(),
    }), flush=True)
    for line in sys.stdin:
        if line.strip() != "step":
            break
        t = time.perf_counter()
        loss = step()
        print(json.dumps({"seconds": time.perf_counter() - t, "loss": loss}), flush=True)
    print(json.dumps({"done": True, "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}), flush=True)


if __name__ == "__main__":
    main()

"""The peer's model for the bench-side scripts (peft-steps.py, peft-generate.py): shared/reference/bench_peft.py's
MODELS and peft_config, loaded from its path, with its settings (sdpa attention, torch threads, seed 0)."""

import importlib.util

import torch


def load_peer(script, name, method, threads):
    """bench_peft.py as a module, and its PEFT model of `method` on model `name` (eval mode), with the base config."""
    spec = importlib.util.spec_from_file_location("bench_peft", script)
    bp = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bp)
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model, cfg = bp.MODELS[name]()
    model.set_attn_implementation("sdpa")
    pm = bp.get_peft_model(model, bp.peft_config(method, name, cfg))
    pm.eval()
    return bp, pm, cfg

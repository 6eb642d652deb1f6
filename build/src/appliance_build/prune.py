"""Prune stage: per-matrix magnitude pruning of the decoder's linear layers to a target sparsity,
kept only if the eval loss stays within the recipe's threshold."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from appliance_build.training_data import mean_loss


def magnitude_prune(model, sparsity: float) -> dict[str, float]:
    """Zero the smallest-|w| fraction of every decoder linear weight; returns measured sparsity."""
    import torch

    zeros = total = 0
    with torch.no_grad():
        for name, module in model.named_modules():
            if isinstance(module, torch.nn.Linear) and ".layers." in name:
                weight = module.weight
                k = int(sparsity * weight.numel())
                if k:
                    threshold = weight.abs().flatten().kthvalue(k).values
                    weight.masked_fill_(weight.abs() <= threshold, 0.0)
                zeros += int((weight == 0).sum())
                total += weight.numel()
    all_params = sum(p.numel() for p in model.parameters())
    all_zeros = sum(int((p == 0).sum()) for p in model.parameters())
    return {"linear_sparsity": zeros / max(total, 1), "overall_sparsity": all_zeros / max(all_params, 1)}


def prune(model_dir: Path, eval_rows: list[dict], cfg: dict[str, Any], out: Path, pad_id: int) -> dict[str, Any]:
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32)
    before = mean_loss(model, eval_rows, pad_id)
    measured = magnitude_prune(model, cfg["sparsity"])
    after = mean_loss(model, eval_rows, pad_id)
    increase = (after - before) / before if before else 0.0
    kept = increase <= cfg["max_eval_loss_increase"]
    if kept:
        target = out / "model"
        model.save_pretrained(target)
        model_out = str(target)
    else:
        model_out = str(model_dir)  # the seed's rule: keep the original when pruning hurts too much
    return {
        "target_sparsity": cfg["sparsity"],
        **measured,
        "eval_loss_before": before,
        "eval_loss_after": after,
        "relative_increase": increase,
        "threshold": cfg["max_eval_loss_increase"],
        "kept_pruned": kept,
        "model_dir": model_out,
    }

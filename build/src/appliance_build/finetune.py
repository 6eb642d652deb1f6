"""Fine-tune stage: Hugging Face Trainer over the train split, optional LoRA merged at the end,
resumable from the checkpoints of an interrupted run."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from appliance_build.training_data import Collator, mean_loss


class _ListDataset:
    def __init__(self, rows):
        self.rows = rows

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, index):
        return self.rows[index]


def finetune(base_dir: Path, train_rows: list[dict], eval_rows: list[dict], cfg: dict[str, Any],
             out: Path, seed: int, pad_id: int) -> dict[str, Any]:
    """`train_rows`/`eval_rows` are encoded examples (input_ids, attention_mask, labels)."""
    import torch
    from transformers import AutoModelForCausalLM, Trainer, TrainingArguments

    model = AutoModelForCausalLM.from_pretrained(str(base_dir), dtype=torch.float32)
    cuda = torch.cuda.is_available()
    if cuda:
        model.to("cuda")
    base_loss = mean_loss(model, eval_rows, pad_id)

    if cfg["lora"]:
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(
            r=cfg["lora_r"], lora_alpha=cfg["lora_alpha"], lora_dropout=cfg["lora_dropout"],
            target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
            task_type="CAUSAL_LM"))

    fp16 = cuda if cfg["fp16"] == "auto" else bool(cfg["fp16"]) and cuda
    checkpoints = out / "checkpoints"
    args = TrainingArguments(
        output_dir=str(checkpoints),
        num_train_epochs=cfg["epochs"],
        max_steps=cfg["max_steps"],
        per_device_train_batch_size=cfg["batch_size"],
        per_device_eval_batch_size=cfg["batch_size"],
        gradient_accumulation_steps=cfg["gradient_accumulation_steps"],
        learning_rate=cfg["learning_rate"],
        warmup_steps=cfg["warmup_steps"],
        weight_decay=cfg["weight_decay"],
        logging_steps=cfg["logging_steps"],
        eval_strategy="steps",
        eval_steps=cfg["eval_steps"],
        save_strategy="steps",
        save_steps=cfg["save_steps"],
        save_total_limit=2,
        fp16=fp16,
        seed=seed,
        report_to=[],
        disable_tqdm=False,
        dataloader_num_workers=0,
        remove_unused_columns=False,
        use_cpu=not cuda,
    )
    trainer = Trainer(model=model, args=args, train_dataset=_ListDataset(train_rows),
                      eval_dataset=_ListDataset(eval_rows), data_collator=Collator(pad_id))
    resume = checkpoints.is_dir() and any(checkpoints.glob("checkpoint-*"))
    result = trainer.train(resume_from_checkpoint=True if resume else None)

    if cfg["lora"]:
        model = model.merge_and_unload()
    model = model.to("cpu").float()
    tuned_loss = mean_loss(model, eval_rows, pad_id)
    target = out / "model"
    model.save_pretrained(target)
    history = [{k: v for k, v in row.items()} for row in trainer.state.log_history]
    return {
        "model_dir": str(target),
        "resumed_from_checkpoint": resume,
        "steps": trainer.state.global_step,
        "train_runtime_s": result.metrics.get("train_runtime"),
        "train_loss": result.metrics.get("train_loss"),
        "fp16": fp16,
        "lora": cfg["lora"],
        "train_examples": len(train_rows),
        "eval_examples": len(eval_rows),
        "base_eval_loss": base_loss,
        "eval_loss": tuned_loss,
        "base_perplexity": math.exp(base_loss),
        "perplexity": math.exp(tuned_loss),
        "log_history": history,
    }

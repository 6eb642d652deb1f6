"""Fine-tune stage: Hugging Face Trainer over the train split, optional LoRA merged at the end,
resumable from the checkpoints of an interrupted run."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

from appliance_build.training_data import Collator, answer_loss, mean_loss


class _ListDataset:
    def __init__(self, rows):
        self.rows = rows

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, index):
        return self.rows[index]


def precision(setting: str, cuda: bool) -> dict[str, bool]:
    """TrainingArguments' fp16/bf16 flags. On a GPU "auto" takes bf16 where the GPU has it, else
    fp16. On a CPU "auto" (or "bf16") trains with bf16 autocast where the CPU multiplies bf16 in
    hardware (AMX), fp32 elsewhere; fp16 never runs on a CPU. The weights and the optimizer stay
    fp32 either way, and the eval losses are measured in fp32."""
    import torch

    if setting == "fp32":
        return {"fp16": False, "bf16": False}
    if not cuda:
        return {"fp16": False, "bf16": setting in ("auto", "bf16") and cpu_bf16()}
    if setting == "auto":
        bf16 = torch.cuda.is_bf16_supported()
        return {"fp16": not bf16, "bf16": bf16}
    return {"fp16": setting == "fp16", "bf16": setting == "bf16"}


def cpu_bf16() -> bool:
    """Whether this CPU has AMX tiles (bf16 matrix multiplies in hardware): a forward and backward
    pass of SmolLM2-135M over 2 x 650 tokens took 3.4 s in bf16 autocast against 5.9 s in fp32 on
    the 2-core AMX VM (benchmarks/build_pipeline.md). Without AMX, bf16 on a CPU is no faster."""
    import torch

    probe = getattr(torch.cpu, "_is_amx_tile_supported", None)
    try:
        return bool(probe and probe() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def _trainer_class():
    from transformers import Trainer

    class AnswerLossTrainer(Trainer):
        """The loss on answer tokens only, with output logits computed for those positions alone:
        a grounded prompt is mostly evidence, and the vocabulary projection of every prompt
        position would cost a fifth of each step for nothing."""

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            # The loss calls the decoder itself, not the model's forward that the accelerator wraps
            # in autocast on a GPU: without this a GPU would train in fp32 whatever fp16/bf16 say.
            with self.accelerator.autocast():
                if num_items_in_batch is not None:  # gradient accumulation: normalise over the whole batch
                    loss = answer_loss(model, inputs, reduction="sum") / num_items_in_batch
                else:
                    loss = answer_loss(model, inputs)
            return (loss, {"loss": loss}) if return_outputs else loss

    return AnswerLossTrainer


def finetune(base_dir: Path, train_rows: list[dict], eval_rows: list[dict], cfg: dict[str, Any],
             out: Path, seed: int, pad_id: int) -> dict[str, Any]:
    """`train_rows`/`eval_rows` are encoded examples (input_ids, attention_mask, labels)."""
    import torch
    from transformers import AutoModelForCausalLM, TrainingArguments

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

    half = precision(cfg["precision"], cuda)
    # On a GPU memory is not what limits the batch: one large batch a step instead of accumulating.
    batch_size = (cfg["gpu_batch_size"] or cfg["batch_size"] * cfg["gradient_accumulation_steps"]) if cuda \
        else cfg["batch_size"]
    accumulation = 1 if cuda else cfg["gradient_accumulation_steps"]
    checkpoints = out / "checkpoints"
    args = TrainingArguments(
        output_dir=str(checkpoints),
        num_train_epochs=cfg["epochs"],
        max_steps=cfg["max_steps"],
        per_device_train_batch_size=batch_size,
        per_device_eval_batch_size=batch_size,
        gradient_accumulation_steps=accumulation,
        learning_rate=cfg["learning_rate"],
        warmup_steps=cfg["warmup_steps"],
        weight_decay=cfg["weight_decay"],
        logging_steps=cfg["logging_steps"],
        eval_strategy="steps",
        eval_steps=cfg["eval_steps"],
        save_strategy="steps",
        save_steps=cfg["save_steps"],
        save_total_limit=2,
        prediction_loss_only=True,
        group_by_length=True,  # batches of similar length: little padding in long grounded prompts
        seed=seed,
        report_to=[],
        disable_tqdm=False,
        dataloader_num_workers=0,
        remove_unused_columns=False,
        use_cpu=not cuda,
        **half,
    )
    trainer = _trainer_class()(model=model, args=args, train_dataset=_ListDataset(train_rows),
                               eval_dataset=_ListDataset(eval_rows), data_collator=Collator(pad_id))
    resume = checkpoints.is_dir() and any(checkpoints.glob("checkpoint-*"))
    wall, cpu = time.perf_counter(), time.process_time()
    result = trainer.train(resume_from_checkpoint=True if resume else None)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu

    if cfg["lora"]:
        model = model.merge_and_unload()
    model = model.to("cpu").float()
    tuned_loss = mean_loss(model, eval_rows, pad_id)
    target = out / "model"
    model.save_pretrained(target)
    history = [{k: v for k, v in row.items()} for row in trainer.state.log_history]
    steps = trainer.state.global_step
    return {
        "model_dir": str(target),
        "resumed_from_checkpoint": resume,
        "steps": steps,
        "batch_size": batch_size,
        "gradient_accumulation_steps": accumulation,
        "train_runtime_s": result.metrics.get("train_runtime"),
        # CPU seconds of this process over training (all threads): on a shared machine the wall
        # time says more about the neighbours than about the work; this says what the work took.
        "train_cpu_s": round(cpu, 1),
        "train_wall_s": round(wall, 1),
        "cpu_s_per_step": round(cpu / steps, 2) if steps else None,
        "train_loss": result.metrics.get("train_loss"),
        "fp16": half["fp16"],
        "bf16": half["bf16"],
        "device": "cuda" if cuda else "cpu",
        "lora": cfg["lora"],
        "train_examples": len(train_rows),
        "train_tokens": sum(len(r["input_ids"]) for r in train_rows),
        "eval_examples": len(eval_rows),
        "base_eval_loss": base_loss,
        "eval_loss": tuned_loss,
        "base_perplexity": math.exp(base_loss),
        "perplexity": math.exp(tuned_loss),
        "log_history": history,
    }

"""The build report: Markdown tables and a PNG plot of the evaluation, next to report.json."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _fmt(value: Any, spec: str = ".4f") -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return format(value, spec)
    return str(value)


def markdown(recipe_name: str, inputs: dict[str, Any], result: dict[str, Any]) -> str:
    lines = [f"# Build report: {recipe_name}", ""]
    lines += ["## Models", "", "| model | eval loss | perplexity | examples | token F1 | size |",
              "|---|---|---|---|---|---|"]
    for row in result["rows"]:
        size = f"{row['bytes'] / 2**20:.1f} MiB" if row.get("bytes") else "-"
        lines.append(f"| {row['model']} | {_fmt(row['eval_loss'])} | {_fmt(row['perplexity'], '.3f')} | "
                     f"{_fmt(row.get('examples'))} | {_fmt(row.get('token_f1'), '.3f')} | {size} |")
    lines += answers_section(result.get("answers") or {})
    lines += grounded_section(inputs.get("grounded") or {}, inputs.get("finetune") or {})
    lines += ["", "Perplexity over eval-split examples (answer tokens only): the torch rows over the "
              f"{result['eval_examples']} the fine-tune measured, the GGUF rows (llama.cpp) over "
              f"{result.get('gguf_eval_examples', result['eval_examples'])}; compare rows of one kind. "
              f"Token F1 over {result['held_out_qa']} held-out QA/chat pairs, greedy decoding.", ""]
    if result["comparisons"]:
        lines += ["## Comparisons", ""] + [f"- {k}: {v:+.2%}" for k, v in result["comparisons"].items()] + [""]
    lines += adaptation_section(result.get("embedder_adaptation") or {})
    retrieval = result.get("retrieval") or {}
    if retrieval:
        lines += ["## Embedder retrieval", ""] + [f"- {k}: {_fmt(v, '.3f')}" for k, v in retrieval.items()] + [""]
    for name in ("load", "clean", "validate", "base", "prune", "export", "embedder"):
        summary = inputs.get(name)
        if summary is None:
            continue
        lines += [f"## {name}", ""]
        for key, value in summary.items():
            if key in ("log_history",):
                continue
            text = str(value)
            lines.append(f"- {key}: {text[:400]}{'…' if len(text) > 400 else ''}")
        lines.append("")
    lines += ["## Wall time per stage (s)", "", "| stage | seconds |", "|---|---|"]
    lines += [f"| {k} | {_fmt(v, '.1f')} |" for k, v in result["stage_wall_s"].items()]
    return "\n".join(lines) + "\n"


ANSWER_RATES = ("good", "degenerate", "idk", "faithful", "covers")
SET_TITLES = {
    "all": "every held-out item",
    "golden": "golden set over the build's documents",
    "manuals": "manual probes, documents never trained on",
    "golden, document trained on": "golden set, the item's document was in the training split (question unseen)",
    "golden, document never trained on": "golden set, the item's document was held out of training",
}


def answers_section(answers: dict[str, Any]) -> list[str]:
    """Held-out answer figures per set and language, the ship decision, answers side by side."""
    if not answers:
        return []
    ship = answers.get("ship", {})
    lines = ["", "## Answers (held-out, through the served path)", ""]
    if ship.get("measured"):
        modes = ", ".join(f"{lang}: {mode}" for lang, mode in ship["modes"].items())
        lines += [f"**Ship decision:** {'extractive only' if ship['extractive_only'] else modes}. "
                  f"answers.mode = auto answers {modes}.", ""]
        lines += [f"- {lang}: {reason}" for lang, reason in ship["reasons"].items()] + [""]
    lines += ["Each item is asked through retrieval and evidence selection; the extractive row quotes the evidence, "
              "the model rows answer in generative mode with the verifier (unsupported sentences removed, the quote "
              "served where nothing survives). Rates are shares of items; invented counts numbers and codes in "
              "neither the evidence nor the gold document.", ""]
    for name, per_lang in answers.get("figures", {}).items():
        lines += [f"### {SET_TITLES.get(name, name)}", "",
                  "| language | answer | n | good | degenerate | idk | faithful | covers | invented |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for lang, per_label in per_lang.items():
            for label, figures in per_label.items():
                if not figures.get("n"):
                    continue
                shown = "extractive" if label == "extractive" else f"{label} (generative, verified)"
                lines.append(f"| {lang} | {shown} | {figures['n']} | "
                             + " | ".join(f"{figures[k]:.3f}" for k in ANSWER_RATES) + f" | {figures['invented']} |")
        lines.append("")
    for label, mix in answers.get("served_modes", {}).items():
        lines.append(f"- {label}: served answers by kind {mix}")
    for name, steps in answers.get("seconds", {}).items():
        lines.append(f"- wall time, {name}: " + ", ".join(f"{step} {value:.0f} s" for step, value in steps.items())
                     + " (the first model's run includes the extractive answers)")
    examples = answers.get("side_by_side") or []
    if examples:
        lines += ["", "### Answers side by side", ""]
        for example in examples:
            lines += [f"**{example['lang']} · {example['set']} {example['id']}: {example['question']}**", "",
                      f"- gold: {_one_line(example['gold'])}"]
            for label, answer in example["answers"].items():
                flag = "good" if answer["good"] else "not good"
                invented = f", invented {answer['invented']}" if answer["invented"] else ""
                lines.append(f"- {label} ({answer['answer_mode']}, {flag}{invented}): {_one_line(answer['answer'])}")
            lines.append("")
    return lines + [""]


def _one_line(text: str, limit: int = 400) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit] + "…"


def grounded_section(grounded: dict[str, Any], tuned: dict[str, Any]) -> list[str]:
    if not grounded:
        return []
    train, evaluation = grounded["train"], grounded["eval"]
    lines = ["## Grounded training data", "",
             f"- train: {train['examples']} examples {train['label']}, by kind {train['kind']}, by language "
             f"{train['lang']}, targets from {train['target_source']}, gold document left out "
             f"{train['gold_left_out'].get('True', 0)}; {train['tokens_mean']} tokens on average "
             f"(max {train['tokens_max']})",
             f"- eval (eval-split questions, every document searchable): {evaluation['examples']} examples "
             f"{evaluation['label']}",
             f"- retrieval for training searched {len(grounded['train_documents'])} of {grounded['documents']} "
             f"documents (the train split's); {grounded['evaluation_questions_left_out']} training questions "
             "matched an evaluation question and were left out",
             f"- not made into examples: {grounded['skipped_train']}"]
    if tuned:
        precision = "bf16" if tuned.get("bf16") else "fp16" if tuned.get("fp16") else "fp32"
        lines.append(f"- fine-tune: {tuned.get('steps')} steps of {tuned.get('batch_size')} on {tuned.get('device')}"
                     f" ({precision}{', LoRA' if tuned.get('lora') else ''}), {tuned.get('cpu_s_per_step')} CPU s a step, "
                     f"{tuned.get('train_wall_s')} s wall")
    for sample in grounded.get("samples", []):
        lines.append(f"- sample ({sample['label']}, {sample['target_source']}): {_one_line(sample['question'], 120)} "
                     f"→ {_one_line(sample['target'], 200)}")
    return lines + [""]


SET_NOTES = {
    "eval pairs": "held out: queries and passages from eval-split documents and conversations only",
    "kb probes": "held-out questions (never trained on) against every KB section, train-split documents included",
}


def adaptation_section(adaptation: dict[str, Any]) -> list[str]:
    if not adaptation:
        return []
    k = adaptation["k"]
    at_k = f"recall@{k}"
    lines = ["## Embedder adaptation", "", f"**Decision:** {adaptation['reason']}", "",
             f"| set | embedder | recall@1 | {at_k} | MRR |", "|---|---|---|---|---|"]
    recall = adaptation.get("recall", {})
    measured = recall.get("base", {})
    for name in measured:
        for label in ("base", "adapted"):
            if row := recall.get(label, {}).get(name):
                lines.append(f"| {name} | {label} | {row['recall@1']:.3f} | {row[at_k]:.3f} | {row['mrr']:.3f} |")
    lines.append("")
    for name, note in SET_NOTES.items():
        if name in measured:
            lines.append(f"- {name}: {note}; {adaptation.get('eval_set' if name == 'eval pairs' else 'probe_set')}")
    for name, base in measured.items():
        adapted = recall.get("adapted", {}).get(name, {}).get("by_kind", {})
        kinds = [f"{kind} {figures[at_k]:.3f} -> {adapted.get(kind, {}).get(at_k, 0):.3f}"
                 for kind, figures in base.get("by_kind", {}).items()]
        lines.append(f"- {name}, {at_k} by query kind (base -> adapted): {', '.join(kinds)}")
    lines += [f"- training pairs (train split only): {adaptation.get('train_pairs')} "
              f"{adaptation.get('train_pairs_by_kind')}; {adaptation.get('training', {})}", ""]
    return lines


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["rows"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    axes[0].barh([r["model"] for r in rows], [r["perplexity"] for r in rows], color="#4c72b0")
    axes[0].set_xlabel("perplexity on eval split (lower is better)")
    scored = [r for r in rows if r.get("token_f1") is not None]
    axes[1].barh([r["model"] for r in scored], [r["token_f1"] for r in scored], color="#55a868")
    axes[1].set_xlabel("token F1 on held-out QA (higher is better)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_report(ctx, result: dict[str, Any], out: Path) -> None:
    inputs = {name: output.summary for name, output in ctx.inputs.items()}
    (out / "report.md").write_text(markdown(ctx.recipe.name, inputs, result), encoding="utf-8")
    if ctx.recipe["evaluate"]["plot"] and result["rows"]:
        plot(result, out / "report.png")

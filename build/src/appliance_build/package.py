"""Package stage: `models/<name>/<version>/` with the GGUF, the ONNX embedder, the report and manifest.json."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

from appliance import manifest as manifest_format
from appliance_build.errors import BuildError

REPORT_FILES = ("report.md", "report.json", "report.png")


def package(ctx) -> dict[str, Any]:
    recipe = ctx.recipe
    exported = ctx.need("export")
    keys = "".join(ctx.inputs[name].key[:4] for name in sorted(ctx.inputs))
    version = recipe["package"]["version"] or f"{time.strftime('%Y%m%d', time.gmtime())}-{keys[:12]}"
    name = recipe["name"]
    final = ctx.models_dir / name / version
    staging = ctx.models_dir / name / f".{version}.{os.getpid()}.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)

    gguf_source = Path(exported.summary["main"])
    gguf_name = f"{name}-{recipe['export']['gguf_type']}.gguf"
    shutil.copy2(gguf_source, staging / gguf_name)
    roles = {gguf_name: "gguf"}
    if (embedded := ctx.input("embedder")) is not None:
        shutil.copytree(embedded.summary["folder"], staging / "embedder")
        roles["embedder"] = "embedder"
    report_dir = staging / "report"
    report_dir.mkdir()
    evaluated = ctx.input("evaluate")
    if evaluated is not None:
        for file_name in REPORT_FILES:
            if (evaluated.path / file_name).is_file():
                shutil.copy2(evaluated.path / file_name, report_dir / file_name)
    data_report = {n: ctx.inputs[n].summary for n in ("load", "clean", "augment", "validate", "grounded")
                   if n in ctx.inputs}
    (report_dir / "data.json").write_text(json.dumps(data_report, indent=2, ensure_ascii=False, default=str) + "\n",
                                          encoding="utf-8")
    roles["report"] = "report"

    metrics: dict[str, Any] = {}
    answers: dict[str, Any] = {}
    if evaluated is not None:
        metrics = {k: evaluated.summary[k] for k in ("comparisons", "retrieval", "rows", "embedder_adaptation")
                   if k in evaluated.summary}
        answers = evaluated.summary.get("answers") or {}
        if answers:
            metrics["answers"] = {k: answers[k] for k in ("sets", "figures", "served_modes", "ship", "model")
                                  if k in answers}
    adapted = ctx.input("embedder_adapt")
    if adapted is not None and "embedder_adaptation" not in metrics:
        metrics["embedder_adaptation"] = {k: adapted.summary.get(k) for k in ("kept", "reason", "recall")}
    export_checks = {k: exported.summary.get(k) for k in ("tokenizer", "logits")}
    metrics["export_checks"] = export_checks
    if (pruned := ctx.input("prune")) is not None:
        metrics["prune"] = {k: v for k, v in pruned.summary.items() if k != "model_dir"}

    base = ctx.input("base")
    load = ctx.input("load")
    manifest = manifest_format.Manifest(
        name=name,
        version=version,
        files=manifest_format.describe_files(staging, roles),
        recipe={"name": recipe.name, "settings": recipe.settings},
        data_fingerprint=load.summary.get("data_fingerprint", load.key) if load else "",
        metrics=metrics,
        answer_figures=answers.get("answer_figures", {}),
        extractive_only=bool(answers.get("ship", {}).get("extractive_only")),
        lineage={
            "base_model": recipe["base"]["model"],
            "base_source": base.summary.get("source_gguf") if base else exported.summary.get("source"),
            "embedder": recipe["base"]["embedder"],
            "embedder_quantization": embedded.summary["method"] if embedded else None,
            # "adapted": fine-tuned on this build's corpus and kept by the recall gate; "base": as shipped.
            "embedder_source": embedded.summary.get("source", "base") if embedded else None,
            "embedder_name": embedded.summary.get("name") if embedded else None,
            "stages": {n: {"key": o.key[:16], "wall_s": o.summary.get("wall_s")} for n, o in ctx.inputs.items()},
        },
    )
    manifest_format.write(staging, manifest)
    manifest_format.verify(staging)
    if final.exists():
        shutil.rmtree(final)
    os.replace(staging, final)
    if not (final / gguf_name).is_file():
        raise BuildError(f"Packaging {final} failed: {gguf_name} is missing after the move.")
    return {"folder": str(final), "version": version, "gguf": str(final / gguf_name),
            "files": len(manifest.files), "extractive_only": manifest.extractive_only}

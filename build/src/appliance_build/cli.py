"""`appliance-build`: run a recipe end to end or up to one stage; library errors become messages."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from appliance_build.errors import BuildError
from appliance_build.recipe import ALL_STAGES, RECIPES_DIR, Recipe

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@click.group()
def main() -> None:
    """Offline build pipeline for the ERP appliance."""


@main.command()
@click.argument("recipe")
@click.option("--stage", type=click.Choice(ALL_STAGES), help="Run up to and including this stage.")
@click.option("--out", "models_dir", type=click.Path(path_type=Path), help="Models folder (default: models/).")
@click.option("--cache", "cache_dir", type=click.Path(path_type=Path), help="Stage cache (default: var/build-cache).")
@click.option("--set", "assignments", multiple=True, metavar="SECTION.KEY=VALUE",
              help="Override a recipe setting, VALUE in TOML syntax (e.g. --set data.docs_dir='\"kb\"').")
def run(recipe: str, stage: str | None, models_dir: Path | None, cache_dir: Path | None,
        assignments: tuple[str, ...]) -> None:
    """Run RECIPE (a name in build/recipes/ or a .toml path)."""
    from appliance.errors import ApplianceError
    from appliance_build.pipeline import Pipeline

    try:
        loaded = Recipe.load(recipe, overrides=parse_assignments(assignments))
        outputs = Pipeline(loaded, cache_dir=cache_dir, models_dir=models_dir).run(only=stage)
    except (BuildError, ApplianceError) as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(1)
    if "package" in outputs:
        click.echo(outputs["package"].summary["folder"])


def parse_assignments(assignments: tuple[str, ...]) -> dict:
    import tomllib

    overrides: dict = {}
    for item in assignments:
        key, sep, value = item.partition("=")
        if not sep:
            raise click.BadParameter(f"{item!r} is not SECTION.KEY=VALUE", param_hint="--set")
        try:
            parsed = tomllib.loads(f"v = {value}")["v"]
        except tomllib.TOMLDecodeError:
            parsed = value  # a bare word is taken as a string
        node = overrides
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = parsed
    return overrides


@main.command("embedder")
@click.option("--out", type=click.Path(path_type=Path), required=True,
              help="Folder to write the artifact to (e.g. <data_dir>/models/embedder).")
@click.option("--from", "source", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="A sentence-transformers model folder to export instead of the bundled "
                   "all-MiniLM-L6-v2 (e.g. multilingual-e5-small or bge-m3, saved on a connected "
                   "machine and copied here).")
@click.option("--name", help="The embedder's name in embedder.json, /api/status and /v1/embeddings "
                             "(default: the folder's name).")
@click.option("--query-prefix", help="Text put before every question, e.g. 'query: ' (default: "
                                     "the model's own 'query' prompt, if it names one).")
@click.option("--passage-prefix", help="Text put before every passage, e.g. 'passage: ' (default: "
                                       "the model's own 'passage' or 'document' prompt).")
@click.option("--pooling", type=click.Choice(["mean", "cls", "last", "max"]),
              help="How token states become one vector (default: the model's Pooling config).")
@click.option("--normalize/--no-normalize", default=None,
              help="Unit-length vectors (default: yes, unless the model was trained for raw dot "
                   "products without a Normalize module).")
@click.option("--max-length", type=int, help="Longest input in tokens; longer ones are cut (default: "
                                             "the model's max_seq_length).")
@click.option("--quantization", type=click.Choice(["dynamic", "static"]), default="dynamic",
              show_default=True, help="static calibrates on the sample knowledge base.")
@click.option("--fp32-out", type=click.Path(path_type=Path),
              help="Also write the fp32 ONNX model (same graph, not quantized) to this folder, "
                   "e.g. to benchmark int8 against it.")
def embedder(out: Path, source: Path | None, name: str | None, query_prefix: str | None,
             passage_prefix: str | None, pooling: str | None, normalize: bool | None,
             max_length: int | None, quantization: str, fp32_out: Path | None) -> None:
    """Export a sentence-transformers model (the bundled all-MiniLM-L6-v2 unless --from names
    another) to the appliance's int8 ONNX embedder artifact, with its pooling, normalisation,
    dimension, longest input and query/passage prefixes in embedder.json."""
    import json
    import shutil
    import tempfile

    from appliance_build.basemodel import bundled_embedder
    from appliance_build.embedder import CONTRACT, export_embedder, sentence_transformers_spec
    from appliance_build.recipe import DEFAULTS

    overrides = {key: value for key, value in {
        "query_prefix": query_prefix, "passage_prefix": passage_prefix, "pooling": pooling,
        "normalize": normalize}.items() if value is not None}
    corpus = _sample_corpus() if quantization == "static" else []
    try:
        folder = source if source is not None else bundled_embedder()
        own = sentence_transformers_spec(folder, overrides)  # refused here, before the long export
        cfg = {**DEFAULTS["embedder"], "quantization": quantization,
               "max_length": max_length or (own["max_length"] if source is not None
                                            else DEFAULTS["embedder"]["max_length"])}
        label = (name or folder.name.lower()) if source is not None else (name or CONTRACT["name"])
        out.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=out.parent) as work:
            result = export_embedder(folder, corpus, cfg, Path(work), seed=0, name=label,
                                     overrides=overrides)
            if fp32_out is not None:
                _write_fp32(result, fp32_out)
            if out.exists():
                shutil.rmtree(out)
            Path(result["folder"]).rename(out)  # same file system: the artifact appears whole
    except BuildError as exc:
        click.secho(f"Error: {exc}", fg="red", err=True)
        sys.exit(2)
    spec = json.loads((out / "embedder.json").read_text())
    click.echo(f"wrote {out}: {spec['name']}, {spec['dim']} dimensions, {spec['pooling']} pooling"
               f"{', normalised' if spec['normalize'] else ''}, up to {spec['max_length']} tokens, "
               f"query prefix {spec.get('query_prefix', '')!r}, passage prefix "
               f"{spec.get('passage_prefix', '')!r} "
               f"({result['method']} int8, mean cosine to fp32 "
               f"{max(result['mean_cosine_to_fp32'].values()):.4f})")


def _write_fp32(result: dict, folder: Path) -> None:
    import json
    import shutil

    folder.mkdir(parents=True, exist_ok=True)
    model = result.get("fp32_fused") or str(Path(result["fp32_folder"]) / "model.onnx")
    shutil.copy(model, folder / "model.onnx")
    shutil.copy(Path(result["folder"]) / "tokenizer.json", folder / "tokenizer.json")
    spec = json.loads((Path(result["folder"]) / "embedder.json").read_text())
    (folder / "embedder.json").write_text(json.dumps({**spec, "quantization": "none"}, indent=2) + "\n")


def _sample_corpus() -> list[str]:
    from appliance.knowledge.knowledge_base import sample_kb_path

    return [p.read_text(encoding="utf-8", errors="ignore")[:2000]
            for p in sorted(sample_kb_path().rglob("*")) if p.suffix in (".md", ".txt", ".html")]


@main.command("recipes")
def list_recipes() -> None:
    """List the recipes in build/recipes/."""
    for path in sorted(RECIPES_DIR.glob("*.toml")):
        click.echo(path.stem)


if __name__ == "__main__":
    main()

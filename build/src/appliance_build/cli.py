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


@main.command("recipes")
def list_recipes() -> None:
    """List the recipes in build/recipes/."""
    for path in sorted(RECIPES_DIR.glob("*.toml")):
        click.echo(path.stem)


if __name__ == "__main__":
    main()

"""Running recipes: the built-in method list (`registry`), Recipe / Step (TOML in and
out, `recipe`), and `compress_` / `run_recipe` (`compress`).

It sits above `netshrink.methods` (it names every built-in method) and below the
public API and the CLI (DEVELOPERS.md, "Layering").
"""

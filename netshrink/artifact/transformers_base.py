"""A Hugging Face `transformers` model as an artifact's base: its class name and its
config (config.json's content) in the header, rebuilt with `from_config`.

Only classes listed in transformers' own auto-model tables are built (looked up by
name on the `transformers` package, never an import path from the file), with no
remote code and no network: `trust_remote_code` is never passed and `auto_map` is
ignored.
"""
from __future__ import annotations

import sys

from torch import nn

from netshrink.errors import ArtifactError

_ATTN = (None, "eager", "sdpa")


def spec_of(model: nn.Module) -> dict | None:
    """{"class", "config", "attn"} for a transformers PreTrainedModel, else None."""
    if "transformers" not in sys.modules:  # a model of that library implies it is imported
        return None
    from transformers import PreTrainedModel

    if not isinstance(model, PreTrainedModel):
        return None
    cfg = model.config.to_dict()
    cfg.pop("auto_map", None)
    attn = getattr(model.config, "_attn_implementation", None)
    return {"class": type(model).__name__, "config": cfg, "attn": attn if attn in _ATTN else None}


def allowed_classes() -> set[str]:
    """Every model class named in transformers' auto-model mappings."""
    from transformers.models.auto import modeling_auto

    out: set[str] = set()
    for name in dir(modeling_auto):
        table = getattr(modeling_auto, name)
        if name.endswith("_MAPPING_NAMES") and isinstance(table, dict):
            for v in table.values():
                out.update(v if isinstance(v, (list, tuple)) else [v])
    return out


def build(spec: object) -> nn.Module:
    """The model `spec` describes, with fresh weights (call inside a BuildBudget)."""
    if not (isinstance(spec, dict) and set(spec) == {"class", "config", "attn"} and isinstance(spec["class"], str)
            and isinstance(spec["config"], dict) and spec["attn"] in _ATTN):
        raise ArtifactError("malformed transformers model description")
    if not spec["class"].isidentifier():  # before importing transformers (~2 s) for nothing
        raise ArtifactError(f"transformers class {spec['class']!r} is not one of transformers' model classes")
    try:
        import transformers
        from transformers import CONFIG_MAPPING
    except ImportError:
        raise ArtifactError("this file holds a transformers model; install transformers to load it") from None
    name, cfg = spec["class"], dict(spec["config"])
    if name not in allowed_classes():
        raise ArtifactError(f"transformers class {name!r} is not one of transformers' model classes")
    cls = getattr(transformers, name, None)
    model_type = cfg.pop("model_type", None)
    if cls is None or not isinstance(model_type, str) or model_type not in CONFIG_MAPPING:
        raise ArtifactError(f"transformers model {name} with model_type {model_type!r} is not available")
    cfg.pop("auto_map", None)
    try:
        config = CONFIG_MAPPING[model_type].from_dict(cfg)
        if not isinstance(config, cls.config_class):
            raise ArtifactError(f"{name} does not take a {type(config).__name__}")
        kw = {"attn_implementation": spec["attn"]} if spec["attn"] else {}
        return cls._from_config(config, **kw)
    except ArtifactError:
        raise
    except Exception as e:  # noqa: BLE001 - transformers' own config checks
        raise ArtifactError(f"cannot build transformers {name}: {type(e).__name__}: {str(e)[:200]}") from None

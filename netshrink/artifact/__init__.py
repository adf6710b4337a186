"""The .nshr model artifact: save / load any model, no code in the file.

    architecture.py       module types a file may rebuild (configs, schemas, builders)
    edits.py              the diff of a model against its base, and applying it
    budget.py             what a load may cost (modules, bytes), checked on "meta" first
    transformers_base.py  a transformers model's class + config as the base
    io.py                 save / load
    onnx.py               `netshrink export`: load a file, export and verify it
"""
from netshrink.artifact.architecture import register_module
from netshrink.artifact.budget import LoadLimits
from netshrink.artifact.edits import allow_attribute
from netshrink.artifact.io import load, save

__all__ = ["save", "load", "register_module", "allow_attribute", "LoadLimits"]

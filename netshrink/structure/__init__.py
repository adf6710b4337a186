"""Structured pruning: dependency analysis on the traced graph, importance, physical shrink.

    from netshrink.structure import analyze, shrink
    graph = analyze(model, example)           # groups of coupled channels / units / heads
    graph = analyze(hf_model, {"input_ids": ids, "attention_mask": mask})   # keyword inputs
    shrink(model, example, remove={"fc1": dead_mask})
    register_rule(MyGate, passthrough)        # a user's module: channels pass through unchanged
    register_importance("mine", fn)           # a user's criterion, then importance="mine"

Inside the package imports point one way:
labels -> groups -> hf_blocks -> blocks -> op_rules -> module_rules -> rules -> interpreter ->
tracer -> exported -> graph -> shrink -> importance -> select, depth_pruning.
"""
from netshrink.structure.graph import Component, DependencyGraph, Group, analyze
from netshrink.structure.importance import importance_names, register_importance, scores
from netshrink.structure.module_rules import passthrough, pin_channels
from netshrink.structure.rules import register_rule
from netshrink.structure.shrink import dead_components, remove_components, shrink

__all__ = ["Component", "DependencyGraph", "Group", "analyze", "dead_components", "importance_names",
           "passthrough", "pin_channels", "register_importance", "register_rule", "remove_components", "scores",
           "shrink"]

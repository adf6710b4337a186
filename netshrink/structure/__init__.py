"""Structured pruning: dependency analysis on the traced graph, importance, physical shrink.

    from netshrink.structure import analyze, shrink
    graph = analyze(model, example)           # groups of coupled channels / units / heads
    shrink(model, example, remove={"fc1": dead_mask})
"""
from netshrink.structure.graph import Component, DependencyGraph, Group, analyze
from netshrink.structure.shrink import dead_components, remove_components, shrink

__all__ = ["Component", "DependencyGraph", "Group", "analyze", "dead_components", "remove_components", "shrink"]

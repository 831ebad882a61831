"""mfcore.plan: per-device memory and step time of a parallel layout, and the search for layouts
that fit (``mf-train plan``, ``mf-train --dry-run``). Pure Python over the model configs: nothing
is built and MindSpore is not imported. Formulas and sources: docs/planning.md.

- :mod:`~mfcore.plan.layout`   Layout (TP, PP, V, DP, EP, SP, ZeRO, micro batches, recompute), Device, Workload
- :mod:`~mfcore.plan.shapes`   what a layer holds: parameters by sharding kind, stored activations
- :mod:`~mfcore.plan.memory`   per-device memory of the stage that holds the most
- :mod:`~mfcore.plan.time`     step time: compute, collectives over links, pipeline bubble
- :mod:`~mfcore.plan.search`   evaluate one layout; enumerate and rank those that fit
- :mod:`~mfcore.plan.support`  which layouts today's trainer can run (the one place of that rule)
- :mod:`~mfcore.plan.run`      the plan of a run config
- :mod:`~mfcore.plan.report`   the text ``mf-train plan`` prints
"""
from mfcore.plan.layout import GIB, Device, Layout, Workload, device_for, parse_memory
from mfcore.plan.memory import MemoryBreakdown, memory_per_device, stage_layers
from mfcore.plan.run import device_of, layout_of, plan_run, workload_of
from mfcore.plan.search import Plan, SearchResult, evaluate, search
from mfcore.plan.shapes import model_shape, total_parameters
from mfcore.plan.support import unrunnable
from mfcore.plan.time import StepTime

__all__ = ["GIB", "Device", "Layout", "Workload", "device_for", "parse_memory", "MemoryBreakdown",
           "memory_per_device", "stage_layers", "device_of", "layout_of", "plan_run", "workload_of",
           "Plan", "SearchResult", "evaluate", "search", "model_shape", "total_parameters", "unrunnable",
           "StepTime"]

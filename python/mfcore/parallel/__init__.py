"""mfcore.parallel: process groups, collectives with custom bprop, tensor parallelism, ZeRO-1.

``init_parallel(parallel_cfg)`` joins the msrun job (or stays a trivial one-process context) and
returns a :class:`ParallelContext`; parallelism is applied to a model from outside it with
``ctx.parallelize_model(model)``.
"""
from mfcore.parallel.context import ParallelSection, ParallelContext, init_parallel, launched_by_msrun
from mfcore.parallel.groups import RankGrid

__all__ = ["ParallelSection", "ParallelContext", "RankGrid", "init_parallel", "launched_by_msrun"]

"""This rank's part of a pipelined model: its model chunks (virtual stages), cut from a built model.

The whole model is built first (the same initialisation as one process, so a pipelined run starts
from the same weights), then each rank keeps the cells of its stages and drops the others, whose
memory is freed when the full model goes out of scope. Parameters keep their global names; the
ones only this stage holds are recorded as split over ``pp`` (:mod:`mfcore.parallel.param_layout`),
so each is written to checkpoints once, by its stage, and any pipeline layout (or one process)
reads them back by name. With tensor or expert parallelism the model is split first (whole), then
cut: each stage keeps its TP shards and its EP rank's routed experts, and the TP and EP records of
the parameters it holds move with them (so the stage's reducer, norm, ZeRO-1 shards and checkpoint
blocks see the same layouts as an unpipelined model's).
"""
from typing import List, Tuple

from mindspore import nn

from mfcore.models.stages import EMBEDDING, pipeline_stage, shares_embedding
from mfcore.parallel.param_layout import (ep_split_names, record_ep_plan, record_pp_plan, record_tp_plan,
                                          tp_partial_names, tp_split_axes)
from mfcore.parallel.pipeline_split import stage_counts, stage_layers, virtual_stage


class PipelineModel(nn.Cell):
    """``chunks``: this rank's stages in chunk order; ``stage_ids``: their virtual stage numbers."""

    def __init__(self, chunks, stage_ids: Tuple[int, ...], num_stages: int, shared_embedding: bool,
                 config=None):
        super().__init__(auto_prefix=False)   # the stages' parameter names are the global ones
        self.num_chunks = len(chunks)
        for v, chunk in enumerate(chunks):
            setattr(self, f"chunk{v}", chunk)
        self.stage_ids, self.num_stages = tuple(stage_ids), num_stages
        self.shared_embedding = shared_embedding
        self.config = config

    def chunks(self) -> List[nn.Cell]:
        return [getattr(self, f"chunk{v}") for v in range(self.num_chunks)]

    @property
    def holds_first(self) -> bool:
        return 0 in self.stage_ids

    @property
    def holds_last(self) -> bool:
        return self.num_stages - 1 in self.stage_ids

    def decoder_layers(self):
        return [layer for chunk in self.chunks() for layer in chunk.layers]

    def construct(self, *args):
        raise RuntimeError("a pipelined model runs through mfcore.train.pipeline_step, not as one cell")


def build_pipeline_model(model, ctx) -> PipelineModel:
    """This rank's chunks of ``model`` per ``parallel.pipeline`` / ``virtual_stages`` /
    ``pipeline_layers`` (validated against the model's layer count)."""
    stages, chunks = ctx.pp_size, ctx.config.virtual_stages
    total = stages * chunks
    counts = stage_counts(model.config.num_hidden_layers, total, ctx.config.pipeline_layers)
    layers = stage_layers(counts)
    ids = tuple(virtual_stage(ctx.pp_rank, v, stages) for v in range(chunks))
    cells = [pipeline_stage(model, layers[k], k == 0, k == total - 1) for k in ids]
    shared = shares_embedding(model)
    pm = PipelineModel(cells, ids, total, shared, getattr(model, "config", None))
    owned = [p.name for p in pm.get_parameters() if p.name != EMBEDDING or pm.holds_first]
    record_pp_plan(pm, owned)
    _carry_plans(model, pm)
    return pm


def _carry_plans(model, pm) -> None:
    """The tensor- and expert-parallel records of the parameters this rank's stages hold (``model``
    was parallelized whole before it was cut), so the layouts, reducer and norm of the stages see them."""
    held = {p.name for p in pm.get_parameters()}
    axes = {name: axis for name, axis in tp_split_axes(model).items() if name in held}
    record_tp_plan(pm, axes, [name for name in tp_partial_names(model) if name in held])
    record_ep_plan(pm, [name for name in ep_split_names(model) if name in held])

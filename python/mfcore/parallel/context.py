"""`init_parallel`: join the msrun job (if any) and describe this rank's place in it.

One process without msrun is the trivial context (world of 1, no communication initialised, every
group ``None``), so single-device code pays nothing. Under ``msrun`` (``MS_ROLE`` set) the
collective backend is initialised through ``mindspore.communication.init()`` and the TP and DP
groups of :mod:`mfcore.parallel.groups` are created.
"""
import os
from dataclasses import dataclass, field, fields
from typing import Any, List, Mapping, Optional, Tuple

from mfcore.errors import ConfigError
from mfcore.parallel.groups import RankGrid


def _key(default, help: str):
    return field(default=default, metadata={"help": help})


@dataclass
class ParallelSection:
    """The ``parallel:`` section of a run config (the schema, :mod:`mfcore.config.schema`, uses this
    one definition; it lives with the code it configures so ``mfcore.parallel`` imports no config)."""

    data: int = _key(1, "Data-parallel size (ranks = data * tensor, launched by mf-launch).")
    tensor: int = _key(1, "Tensor-parallel size (attention heads, MLPs and shared experts split; DeepSeek-V3 "
                    "routed experts stay whole on every rank).")
    sequence_parallel: bool = _key(False, "Shard norms/dropout activations along the sequence (needs "
                                   "tensor > 1).")
    optimizer_sharding: bool = _key(False, "ZeRO-1: shard optimizer states over the data-parallel ranks.")
    pipeline: int = _key(1, "Pipeline-parallel stages P: the decoder layers are split into P stages "
                         "(embedding on the first, final norm + head + loss on the last); ranks = "
                         "data * tensor * pipeline.")
    virtual_stages: int = _key(1, "Model chunks per pipeline rank V (interleaved 1F1B when > 1; needs "
                               "pipeline > 1 and micro batches divisible by pipeline).")
    pipeline_layers: Optional[List[int]] = _key(None, "Decoder layers per (virtual) stage, e.g. [15, 16, "
                                                "16, 14] (pipeline * virtual_stages entries summing to "
                                                "the layer count); None: balanced.")
    expert: int = _key(1, "Expert-parallel size E: the routed experts are split over E consecutive "
                       "ranks of a pipeline stage's tensor x data grid (TP innermost; E divides tensor * "
                       "data and the model's n_routed_experts); each expert is replicated over "
                       "tensor * data / E ranks (ZeRO-1 shards its optimizer state over those). With "
                       "tensor > 1 it needs sequence_parallel: each TP rank routes its own sequence shard.")
    expert_tensor: int = _key(1, "Expert tensor parallelism: ranks each routed expert's FFN is split over. 1 keeps "
                              "every routed expert whole on each TP rank (Megatron's DeepSeek recipes); only 1 "
                              "runs today, validation refuses more.")

    @property
    def ranks(self) -> int:
        """The run's world size: data x tensor x pipeline (expert parallelism lives inside them)."""
        return self.data * self.tensor * self.pipeline

    def validate(self) -> "ParallelSection":
        for name in ("data", "tensor", "pipeline", "virtual_stages", "expert", "expert_tensor"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"parallel.{name} must be a positive integer, got {value!r}")
        for name in ("sequence_parallel", "optimizer_sharding"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"parallel.{name} must be true or false, got {getattr(self, name)!r}")
        if self.virtual_stages > 1 and self.pipeline == 1:
            raise ConfigError("parallel.virtual_stages > 1 needs parallel.pipeline > 1")
        layers = self.pipeline_layers
        if layers is not None and (not isinstance(layers, (list, tuple)) or any(
                isinstance(n, bool) or not isinstance(n, int) or n < 0 for n in layers)):
            raise ConfigError(f"parallel.pipeline_layers must be a list of non-negative integers, got {layers!r}")
        return self

    @classmethod
    def coerce(cls, cfg: Any) -> "ParallelSection":
        """Accept ``None``, a mapping, or any object with the same attribute names; validated."""
        if cfg is None:
            return cls()
        names = [f.name for f in fields(cls)]
        if isinstance(cfg, Mapping):
            unknown = sorted(set(cfg) - set(names))
            if unknown:
                raise ConfigError(f"unknown key(s) in parallel: {', '.join(unknown)} (known: {', '.join(names)})")
            return cls(**dict(cfg)).validate()
        return cls(**{n: getattr(cfg, n) for n in names if hasattr(cfg, n)}).validate()


@dataclass(frozen=True)
class ParallelContext:
    """This rank's coordinates, the group names to communicate in, and the parallel options.

    Group names are ``None`` when the group has one member (no communication needed).
    """

    config: ParallelSection = field(default_factory=ParallelSection)
    rank: int = 0
    world_size: int = 1
    grid: RankGrid = field(default_factory=RankGrid)
    tp_group: Optional[str] = None
    dp_group: Optional[str] = None
    tp_ranks: Tuple[int, ...] = (0,)
    dp_ranks: Tuple[int, ...] = (0,)
    device_target: str = "CPU"
    world_group: Optional[str] = None
    pp_group: Optional[str] = None
    pp_ranks: Tuple[int, ...] = (0,)
    ep_group: Optional[str] = None      # ranks sharing their tokens with each other's experts
    ep_ranks: Tuple[int, ...] = (0,)
    edp_group: Optional[str] = None     # ranks holding the same experts (the dp group when ep is 1)
    edp_ranks: Tuple[int, ...] = (0,)

    @property
    def tp_size(self) -> int:
        return self.grid.tp

    @property
    def dp_size(self) -> int:
        return self.grid.dp

    @property
    def pp_size(self) -> int:
        return self.grid.pp

    @property
    def ep_size(self) -> int:
        return self.grid.ep

    @property
    def edp_size(self) -> int:
        return self.grid.edp

    @property
    def ep_rank(self) -> int:
        return self.grid.expert_coords(self.rank)["ep"]

    @property
    def edp_rank(self) -> int:
        return self.grid.expert_coords(self.rank)["edp"]

    @property
    def tp_rank(self) -> int:
        return self.grid.coords(self.rank)["tp"]

    @property
    def dp_rank(self) -> int:
        return self.grid.coords(self.rank)["dp"]

    @property
    def pp_rank(self) -> int:
        return self.grid.coords(self.rank)["pp"]

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """True on the one rank that prints progress and writes shared files (rank 0)."""
        return self.rank == 0

    @property
    def sequence_parallel(self) -> bool:
        # Megatron's rule: with one TP rank there is no sequence to split.
        return self.config.sequence_parallel and self.tp_size > 1

    @property
    def routes_sequence_shards(self) -> bool:
        """Expert parallelism with tensor (+ sequence) parallelism: every TP rank routes its own
        sequence shard (Megatron's layout), so routing statistics are summed over TP as well."""
        return self.ep_size > 1 and self.sequence_parallel

    @property
    def optimizer_sharding(self) -> bool:
        return self.config.optimizer_sharding and self.dp_size > 1

    def parallelize_model(self, model):
        """Swap the model's projections for tensor-parallel layers (no-op when TP is 1) and keep
        this rank's routed experts (no-op when EP is 1)."""
        from mfcore.parallel.expert_parallel import parallelize_experts
        from mfcore.parallel.tensor_parallel import parallelize_model

        return parallelize_experts(parallelize_model(model, self), self)

    def gradient_reducer(self, params, model=None):
        """Cell for the step: sums the gradient buffers over DP in place (TP partial sums first);
        None if no-op."""
        from mfcore.parallel.grad_reduce import GradientReducer

        if self.world_size == 1:
            return None
        return GradientReducer(params, self, model)

    def grad_norm(self, params, model=None):
        """Cell: reduced grads -> global L2 norm, counting TP-sharded gradients over the group."""
        from mfcore.parallel.grad_reduce import ParallelGradNorm

        return ParallelGradNorm(params, self, model)

    def comm(self, dim: str):
        """The :class:`~mfcore.parallel.group_comm.GroupComm` of this rank's ``dim`` group."""
        from mfcore.parallel.group_comm import group_comm

        return group_comm(self, dim)

    def dp_sum(self, values):
        """Sum of a small host number/array over the DP ranks (e.g. loss-token counts)."""
        import numpy as np

        if self.dp_size == 1:
            return np.asarray(values)
        from mfcore.parallel.host_collectives import host_all_reduce

        return host_all_reduce(values, self.dp_group)

    def routing_sum(self, values):
        """Sum of a small host array of routing statistics (expert loads, dropped pairs) over every
        rank of the stage that routed its own tokens: DP, and TP too when TP ranks route sequence
        shards (under plain TP they route the same tokens)."""
        import numpy as np

        values = self.dp_sum(values)
        if not self.routes_sequence_shards:
            return np.asarray(values)
        from mfcore.parallel.host_collectives import host_all_reduce

        return host_all_reduce(values, self.tp_group)

    def any_rank(self, flag: bool) -> bool:
        """Whether ``flag`` is set on any rank of the job, the same answer on all of them (a stop
        request after SIGTERM must end every rank after the same step)."""
        if self.world_size == 1:
            return bool(flag)
        import numpy as np
        from mindspore.communication import GlobalComm
        from mfcore.parallel.host_collectives import host_all_reduce

        return int(host_all_reduce(np.int64(bool(flag)), GlobalComm.WORLD_COMM_GROUP)) > 0

    def barrier(self) -> None:
        """Wait until every rank gets here (a tiny AllReduce over the world; no-op alone)."""
        if self.world_size == 1:
            return
        import numpy as np
        from mfcore.parallel.host_collectives import host_all_reduce

        host_all_reduce(np.zeros(1, np.float32), self.world_group)

    def pp_sum(self, values):
        """Sum of a small host number/array over this rank's pipeline stages."""
        import numpy as np

        if self.pp_size == 1:
            return np.asarray(values)
        from mfcore.parallel.host_collectives import host_all_reduce

        return host_all_reduce(values, self.pp_group)

    def group_among(self, dim: str, ranks: Tuple[int, ...]) -> Optional[str]:
        """The communication group of ``ranks`` (e.g. a pair of neighbouring pipeline stages, or
        the first and last stage sharing the embedding), created on first use; None alone."""
        from mindspore.communication import create_group

        return _group_for(dim, tuple(sorted(ranks)), self.world_size, create_group)

    def describe(self) -> str:
        return (f"rank {self.rank}/{self.world_size}: dp {self.dp_rank}/{self.dp_size}, "
                f"tp {self.tp_rank}/{self.tp_size}, pp {self.pp_rank}/{self.pp_size}, "
                f"ep {self.ep_rank}/{self.ep_size}, sequence_parallel={self.sequence_parallel}, "
                f"optimizer_sharding={self.optimizer_sharding}")


def expert_size_problem(cfg: ParallelSection) -> Optional[str]:
    """Expert-parallel groups are carved out of a stage's tensor x data ranks (the planner's and
    the trainer's one grid, :mod:`mfcore.parallel.groups`): the sizes must divide."""
    ranks = cfg.data * cfg.tensor
    if ranks % cfg.expert == 0:
        return None
    within = (f"parallel.data ({cfg.data})" if cfg.tensor == 1 else
              f"parallel.data x parallel.tensor ({cfg.data} x {cfg.tensor} = {ranks})")
    return (f"parallel.expert ({cfg.expert}) must divide {within}: expert-parallel groups are carved "
            "out of the tensor x data ranks of a pipeline stage")


def launched_by_msrun() -> bool:
    """msrun exports ``MS_ROLE`` (and the scheduler address) to every worker it starts."""
    return bool(os.environ.get("MS_ROLE"))


def init_parallel(parallel_cfg: Any = None) -> ParallelContext:
    """Build the context; under msrun initialise communication and create the TP/DP groups."""
    cfg = ParallelSection.coerce(parallel_cfg)
    problem = expert_size_problem(cfg)
    if problem:
        raise ConfigError(problem)
    grid = RankGrid(tp=cfg.tensor, dp=cfg.data, pp=cfg.pipeline, ep=cfg.expert)
    if not launched_by_msrun():
        if grid.world_size != 1:
            raise ConfigError(
                f"parallel.data ({cfg.data}) x parallel.tensor ({cfg.tensor}) x parallel.pipeline "
                f"({cfg.pipeline}) = {grid.world_size} ranks, "
                f"but this process was started alone; launch it with "
                f"`mf-launch --nproc-per-node {grid.world_size} -- ...`")
        return ParallelContext(config=cfg, grid=grid, device_target=_device_target())
    return _init_distributed(cfg, grid)


def _device_target() -> str:
    import mindspore as ms

    return ms.get_context("device_target")


def _init_distributed(cfg: ParallelSection, grid: RankGrid) -> ParallelContext:
    from mindspore.communication import GlobalComm, create_group, get_group_size, get_rank, init

    if cfg.pipeline > 1:
        # a pipeline rank waits in its first transfer while its neighbour compiles a different
        # (the last stage's: larger) graph; MCCL's default op timeout is shorter than that
        os.environ.setdefault("MS_CPU_COMM_OP_TIMEOUT", "900")
    if not GlobalComm.INITED:  # a second run in the same job (tests) reuses the backend
        init()
    rank, world = get_rank(), get_group_size()
    if world != grid.world_size:
        raise ConfigError(
            f"the job has {world} ranks (nproc-per-node x nnodes) but parallel.data ({cfg.data}) x "
            f"parallel.tensor ({cfg.tensor}) x parallel.pipeline ({cfg.pipeline}) = {grid.world_size}; "
            f"make them equal")
    names = {}
    dims = ("tp", "dp", "pp") + (("ep", "edp") if grid.ep > 1 else ())
    for dim in dims:
        names[dim] = _group_for(dim, grid.group_of(dim, rank), world, create_group)
    if grid.ep == 1:   # the replicas of an expert are the DP ranks; no rank shares tokens
        names["ep"], names["edp"] = None, names["dp"]
    return ParallelContext(
        config=cfg, rank=rank, world_size=world, grid=grid,
        tp_group=names["tp"], dp_group=names["dp"],
        tp_ranks=grid.group_of("tp", rank), dp_ranks=grid.group_of("dp", rank),
        pp_group=names["pp"], pp_ranks=grid.group_of("pp", rank),
        ep_group=names["ep"], ep_ranks=grid.group_of("ep", rank),
        edp_group=names["edp"], edp_ranks=grid.group_of("edp", rank),
        device_target=_device_target(), world_group=GlobalComm.WORLD_COMM_GROUP)


def _group_for(dim, ranks, world, create_group) -> Optional[str]:
    """None for a group of one; the world group when it spans everyone; else a created group."""
    from mindspore.communication import GlobalComm

    if len(ranks) == 1:
        return None
    if len(ranks) == world:
        return GlobalComm.WORLD_COMM_GROUP
    name = RankGrid.group_name(dim, ranks)
    if name not in _CREATED:
        create_group(name, list(ranks))
        _CREATED.add(name)
    return name


_CREATED: set = set()  # communication groups of this process (created once per job)

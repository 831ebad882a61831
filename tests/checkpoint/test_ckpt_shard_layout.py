"""Optimizer and parameter re-slicing across layouts through the trainer's bridge: TP=2 → TP=1,
ZeRO DP=2 → dense, dense → ZeRO DP=3, ZeRO DP=2 → ZeRO DP=3. Stand-in objects with the
interfaces of the model (``get_parameters``, ``tp_shard_axes``), AdamW and ZeroAdamW keep this
numpy-only; the reference is plain slicing of the global arrays."""
import math
from types import SimpleNamespace

import numpy as np
import pytest

from helpers.ckpt_ranks import save_as_ranks
from mfcore.checkpoint import CheckpointManager
from mfcore.train import shard_layout as SL
from mfcore.train.checkpointing import collect_tensors, load_for_resume

RNG = np.random.default_rng(5)
GLOBAL = {"q.weight": RNG.standard_normal((6, 4)).astype(np.float32),   # TP split on axis 0
          "o.weight": RNG.standard_normal((4, 6)).astype(np.float32),   # TP split on axis 1
          "norm.weight": RNG.standard_normal(5).astype(np.float32)}     # replicated
MOMENTS = {(n, k): RNG.standard_normal(a.shape).astype(np.float32) for n, a in GLOBAL.items() for k in SL.MOMENTS}
AXES = {"q.weight": 0, "o.weight": 1}


class Param:
    def __init__(self, name, value):
        self.name, self.value, self.shape = name, value, value.shape

    def asnumpy(self):
        return self.value


def tp_slice(name, arr, tp, r):
    if tp == 1 or name not in AXES:
        return arr
    return np.split(arr, tp, axis=AXES[name])[r]


class Model:
    def __init__(self, tp, r):
        self.params = [Param(n, tp_slice(n, a, tp, r)) for n, a in GLOBAL.items()]
        self.tp_shard_axes = AXES if tp > 1 else {}

    def get_parameters(self):
        return iter(self.params)


class Dense:
    def __init__(self, model, tp, r):
        self.params = model.params
        self.state = {"adam_step": np.array(7, np.int32)}
        for (n, k), m in MOMENTS.items():
            self.state[f"{n}.{k}"] = tp_slice(n, m, tp, r)

    def state_arrays(self):
        return dict(self.state)

    def load_state_arrays(self, state):
        self.loaded = state


class Zero(Dense):
    def __init__(self, model, dp, r):
        self.params, self.dp, self.rank = model.params, dp, r
        self.numels = [int(np.prod(p.shape)) for p in self.params]
        self.shard = [math.ceil(n / dp) for n in self.numels]
        self.state = {"adam_step": np.array(7, np.int32)}
        for p, n, s in zip(self.params, self.numels, self.shard):
            for k in SL.MOMENTS:
                flat = np.zeros(dp * s, np.float32)
                flat[:n] = MOMENTS[p.name, k].reshape(-1)
                self.state[f"{p.name}.{k}.shard{r}of{dp}"] = flat[r * s:(r + 1) * s]


def ctx(tp=1, dp=1, r=0):
    return SimpleNamespace(tp_size=tp, tp_rank=r % tp, dp_size=dp, dp_rank=r // tp, rank=r, world_size=tp * dp)


def save(root, layouts):
    """layouts: per rank (model, optimizer, ctx)."""
    save_as_ranks(root, 4, [collect_tensors(m, o, c) for m, o, c in layouts], {"consumed_samples": 1})


def load(root, model, opt, c):
    cfg = SimpleNamespace(checkpoint=SimpleNamespace(resume="auto", allow_mismatch=False))
    loaded = load_for_resume(cfg, CheckpointManager(root), model, opt, c, {})
    opt_state = {k[len("optimizer/"):]: v for k, v in loaded.tensors.items() if k.startswith("optimizer/")}
    return loaded, SL.optimizer_state_from(opt, SL.tp_specs(model, c), opt_state, "test")


def check_dense(loaded, state, tp=1, r=0):
    for n, a in GLOBAL.items():
        assert np.array_equal(loaded.tensors["model/" + n], tp_slice(n, a, tp, r)), n
        for k in SL.MOMENTS:
            assert np.array_equal(state[f"{n}.{k}"], tp_slice(n, MOMENTS[n, k], tp, r)), (n, k)
    assert int(state["adam_step"]) == 7


def test_tp2_to_tp1_and_back(tmp_path):
    layouts = []
    for r in range(2):
        m = Model(2, r)
        layouts.append((m, Dense(m, 2, r), ctx(tp=2, r=r)))
    save(tmp_path, layouts)
    m = Model(1, 0)
    loaded, state = load(tmp_path, m, Dense(m, 1, 0), ctx())
    check_dense(loaded, state)
    m = Model(2, 1)  # and at the same TP size, rank 1 reads only its slices
    loaded, state = load(tmp_path, m, Dense(m, 2, 1), ctx(tp=2, r=1))
    check_dense(loaded, state, tp=2, r=1)


@pytest.mark.parametrize("new_dp", [1, 3])
def test_zero_dp2_to_dense_and_other_dp(tmp_path, new_dp):
    layouts = []
    for r in range(2):
        m = Model(1, 0)
        layouts.append((m, Zero(m, 2, r), ctx(dp=2, r=r)))
    save(tmp_path, layouts)
    m = Model(1, 0)
    if new_dp == 1:
        loaded, state = load(tmp_path, m, Dense(m, 1, 0), ctx())
        check_dense(loaded, state)
        return
    for r in range(new_dp):
        want = Zero(m, new_dp, r)
        _, state = load(tmp_path, m, want, ctx(dp=new_dp, r=r))
        assert set(state) == set(want.state)
        for key, arr in want.state.items():
            assert np.array_equal(state[key], arr), key


def test_dense_to_zero(tmp_path):
    m = Model(1, 0)
    save(tmp_path, [(m, Dense(m, 1, 0), ctx())])
    for r in range(3):
        want = Zero(m, 3, r)
        _, state = load(tmp_path, m, want, ctx(dp=3, r=r))
        for key, arr in want.state.items():
            assert np.array_equal(state[key], arr), key

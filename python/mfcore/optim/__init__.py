"""mfcore.optim: optimizer arithmetic shared by the dense optimizer (:mod:`mfcore.train.optim`) and
the sharded one (:mod:`mfcore.parallel.zero`), so both apply exactly the same update."""
from mfcore.optim.adamw import AdamWUpdate, decays_weight

__all__ = ["AdamWUpdate", "decays_weight"]

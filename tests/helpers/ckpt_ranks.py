"""Several "ranks" saving one checkpoint from threads, as ranks of a job would from processes.

The managers are created first (rank 0 first), as the trainer does before the first step: rank 0
clears leftovers of crashed saves when it is created, so it must exist before any rank saves."""
import threading

from mfcore.checkpoint import CheckpointManager


def save_as_ranks(root, step, per_rank, state, timeout=30.0):
    """``per_rank[r]`` is rank r's tensors; returns after every rank's save (and the commit)."""
    world = len(per_rank)
    managers = [CheckpointManager(root, rank=r, world_size=world, commit_timeout=timeout) for r in range(world)]
    errors = []

    def run(rank):
        try:
            managers[rank].save(step, per_rank[rank], state)
        except Exception as e:  # re-raised below, in the test's thread
            errors.append(e)
    threads = [threading.Thread(target=run, args=(r,)) for r in reversed(range(world))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]

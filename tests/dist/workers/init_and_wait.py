"""A rank (or the scheduler: msrun runs the same script) that records its pid, joins the cluster
and then waits: for the tests of what ends a job from outside (tests/dist/test_launch_scheduler_dist.py)."""
import os
import time

role = os.environ.get("MS_ROLE", "none")
with open(f"pid_{role}_{os.getpid()}", "w") as f:
    f.write(str(os.getpid()))
from mindspore.communication import get_rank, init  # noqa: E402

init()
print(f"ready {get_rank()}", flush=True)
time.sleep(300)

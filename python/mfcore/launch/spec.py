"""What ``mf-launch`` starts on one node (the msrun command line), and the small pieces the
launcher reports with: a rank's failure and a log file followed as it grows."""
import os
import re
import sys
from dataclasses import dataclass, field
from typing import Dict, List, Optional, TextIO, Tuple

from mfcore.errors import ConfigError

WORKER_FAILED = re.compile(r"Worker process (\d+) exit with exception\. Error code: (-?\d+)")
ERROR_LINE = re.compile(r"^(error: |[A-Za-z_][\w.]*(Error|Exception|Interrupt)\b)")


@dataclass
class LaunchSpec:
    """What to start on this node; ``command`` is the argv run by every rank after ``python``."""

    command: List[str]
    nproc_per_node: int = 1
    nnodes: int = 1
    node_rank: int = 0
    master_addr: str = "127.0.0.1"
    master_port: int = 8118
    log_dir: str = "output/msrun_log"
    join: bool = True
    cluster_timeout: int = 600
    env: Dict[str, str] = field(default_factory=dict)

    @property
    def world_size(self) -> int:
        return self.nproc_per_node * self.nnodes

    @property
    def local_ranks(self) -> List[int]:
        first = self.node_rank * self.nproc_per_node
        return list(range(first, first + self.nproc_per_node))

    def validate(self) -> None:
        for name in ("nproc_per_node", "nnodes", "cluster_timeout"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if not 0 <= self.node_rank < self.nnodes:
            raise ConfigError(f"--node-rank {self.node_rank} must be in [0, {self.nnodes - 1}] for --nnodes {self.nnodes}")
        if not 1024 <= self.master_port <= 65535:
            raise ConfigError(f"--master-port {self.master_port} must be in [1024, 65535]")
        if not self.command:
            raise ConfigError("nothing to launch: give the mf-train arguments after `--`")

    def msrun_argv(self) -> List[str]:
        """The msrun command line (msrun's process manager through :mod:`msrun_node`, so only node
        rank 0 starts the scheduler; no PATH lookup is needed for it)."""
        return [sys.executable, "-m", "mfcore.launch.msrun_node",
                f"--worker_num={self.world_size}", f"--local_worker_num={self.nproc_per_node}",
                f"--master_addr={self.master_addr}", f"--master_port={self.master_port}",
                f"--node_rank={self.node_rank}", f"--log_dir={self.log_dir}",
                f"--join={self.join}", f"--cluster_time_out={self.cluster_timeout}",
                # msrun would `tail -f` every rank into its own output; we stream rank 0 ourselves,
                # so name a rank that does not exist to switch msrun's tails off.
                f"--tail_worker_log={self.world_size}",
                "--", "python", *self.command]

    def process_env(self) -> Dict[str, str]:
        """msrun starts every rank as ``python``: make that this interpreter."""
        env = dict(os.environ)
        env.update(self.env)
        env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
        env.setdefault("GLOG_v", "3")
        env["PYTHONUNBUFFERED"] = "1"  # rank logs are files: flush progress lines as they happen
        env["MFCORE_LOCAL_WORLD_SIZE"] = str(self.nproc_per_node)  # ranks sharing this host's memory
        return env

    def worker_log(self, rank: int) -> str:
        return os.path.join(self.log_dir, f"worker_{rank}.log")


@dataclass
class RankFailure:
    rank: Optional[int]
    exit_code: Optional[int]
    message: str
    log_path: Optional[str]
    who: Optional[str] = None  # instead of "rank N" / "a rank" (e.g. the job, when the scheduler died)

    def describe(self) -> str:
        who = self.who or (f"rank {self.rank}" if self.rank is not None else "a rank")
        code = f" (exit code {self.exit_code})" if self.exit_code is not None else ""
        where = f"; log: {self.log_path}" if self.log_path else ""
        return f"{who} failed{code}: {self.message}{where}"


def read_from(path: str, offset: int) -> bytes:
    """What ``path`` holds after byte ``offset`` (nothing when it does not exist yet)."""
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            return f.read()
    except FileNotFoundError:
        return b""


def read_new_lines(path: str, offset: int) -> Tuple[str, int]:
    """The complete lines written to ``path`` after byte ``offset``, and the offset after them
    (a line still being written is left for the next call)."""
    data = read_from(path, offset)
    cut = data.rfind(b"\n") + 1
    return data[:cut].decode("utf-8", "replace"), offset + cut


class LogTail:
    """Incrementally copies a growing file to a stream."""

    def __init__(self, path: str, out: TextIO):
        self.path, self.out, self.offset = path, out, 0

    def pump(self) -> None:
        # Only complete lines, so a line being written is not split on the console.
        text, self.offset = read_new_lines(self.path, self.offset)
        if text:
            self.out.write(text)
            self.out.flush()

    def flush_rest(self) -> None:
        self.pump()
        rest = read_from(self.path, self.offset)
        if rest:
            self.out.write(rest.decode("utf-8", "replace") + "\n")
            self.out.flush()


class LogWatch:
    """The first line of a growing file that matches a pattern. Polled for the whole run, so each
    call reads only what was written since the last one."""

    def __init__(self, path: str, pattern: "re.Pattern[str]"):
        self.path, self.pattern, self.offset = path, pattern, 0
        self.match: Optional["re.Match[str]"] = None

    def search(self, finished: bool = False) -> Optional["re.Match[str]"]:
        """``finished``: the writer has exited, so a last line without a newline counts too."""
        if self.match is None:
            if finished:
                text = read_from(self.path, self.offset).decode("utf-8", "replace")
            else:
                text, self.offset = read_new_lines(self.path, self.offset)
            self.match = self.pattern.search(text)
        return self.match

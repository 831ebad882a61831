"""Progress bar (input MB/s with an ETA, documents/s, tokens/s) and the end-of-run summary."""
from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from typing import List, Optional

from mfcore.data.preprocess.worker import ChunkStats


class Progress:
    """A tqdm bar over input bytes; on by default only when stderr is a terminal."""

    def __init__(self, total_bytes: int, enabled: Optional[bool] = None):
        self.total = total_bytes
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self.start = time.perf_counter()
        self.bar = None

    def __enter__(self) -> "Progress":
        if self.enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=self.total or None, unit="B", unit_scale=True, unit_divisor=1024,
                            desc="tokenizing", dynamic_ncols=True, file=sys.stderr)
        return self

    def update(self, position: int, totals: ChunkStats) -> None:
        if self.bar is None:
            return
        elapsed = max(time.perf_counter() - self.start, 1e-9)
        docs, tokens = sum(totals.documents.values()), sum(totals.tokens.values())
        self.bar.set_postfix_str(f"{docs / elapsed:,.0f} docs/s, {tokens / elapsed:,.0f} tok/s", refresh=False)
        self.bar.update(max(0, position - self.bar.n))

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.close()


@dataclass
class Summary:
    """What a run did; ``str()`` is the report printed at the end."""

    stats: ChunkStats
    input_bytes: int
    seconds: float
    outputs: List[str]
    backend: str = "hf"
    backend_note: str = ""

    @property
    def mib_per_s(self) -> float:
        return self.input_bytes / (1 << 20) / max(self.seconds, 1e-9)

    def __str__(self) -> str:
        s = self.stats
        lines = [f"input: {s.records:,} records, {self.input_bytes / (1 << 20):,.1f} MiB in "
                 f"{self.seconds:,.1f} s ({self.mib_per_s:,.2f} MiB/s; workers used {s.cpu_seconds:,.1f} CPU s)"]
        for key in sorted(s.documents):
            lines.append(f"  {key}: {s.documents[key]:,} documents, {s.tokens[key]:,} tokens, "
                         f"{s.empty.get(key, 0):,} empty documents skipped")
        lines.append(f"  skipped bad lines: {s.bad_lines:,}; records with invalid UTF-8 replaced: {s.replaced_utf8:,}")
        lines.append(f"  tokenizer backend: {self.backend} ({self.backend_note})")
        if self.backend == "native":
            lines.append(f"  pieces handed to tokenizers (newer Unicode, lstrip/rstrip added tokens): {s.native_fallbacks:,}")
        lines.append("output:")
        for path in self.outputs:
            size = os.path.getsize(path) if os.path.exists(path) else 0
            lines.append(f"  {path} ({size:,} bytes)")
        return "\n".join(lines)

"""Pretraining samples from MindRecord files, the format MindSpore Transformers' preprocessing writes.

Each record holds an ``input_ids`` int32 column of ``seq_length + 1`` tokens (the inputs plus the
label of the last one). The records are read once, in the order ``mindspore.dataset.MindDataset``
yields them without shuffling (file by file, in write order), into an ``[N, L + 1]`` table that is
cached as ``.npy`` under ``cache_dir`` and memory-mapped on later runs. Sample ``i`` is record
``order[i]``: the identity, or a permutation drawn from ``seed`` (numpy PCG64) when shuffling. The
training fields (tokens, labels, loss mask, position ids, attention mask) follow the same rules as
the C++ engine's Megatron samples (``SampleOptions``: pad, EOD loss mask, position/attention resets).
"""
import hashlib
import os
from dataclasses import asdict
from typing import Dict, List, Sequence, Tuple

import numpy as np

from mfcore.data.samples import SampleOptions, sample_options
from mfcore.errors import DataError

COLUMN = "input_ids"


def is_mindrecord_path(path: str) -> bool:
    """A MindRecord file (its ``.db`` index lies beside it) or a directory holding such files."""
    if os.path.isdir(path):
        return bool(_files_in_dir(path))
    return os.path.isfile(path) and os.path.isfile(path + ".db")


def _files_in_dir(path: str) -> List[str]:
    names = sorted(n for n in os.listdir(path) if not n.endswith(".db") and os.path.isfile(os.path.join(path, n + ".db")))
    return [os.path.join(path, n) for n in names]


def mindrecord_files(paths: Sequence[str]) -> List[str]:
    """Every MindRecord data file named by ``paths`` (files, or directories of shards), in order."""
    out: List[str] = []
    for p in paths:
        p = os.fspath(p)
        if os.path.isdir(p):
            files = _files_in_dir(p)
            if not files:
                raise DataError(f"{p}: the directory holds no MindRecord file (a file with its .db beside it)")
            out.extend(files)
        elif is_mindrecord_path(p):
            out.append(p)
        else:
            raise DataError(f"{p}: not a MindRecord file (missing, or no {os.path.basename(p)}.db index beside it)")
    return list(dict.fromkeys(os.path.abspath(f) for f in out))


def read_records(files: Sequence[str], seq_length: int) -> np.ndarray:
    """The ``input_ids`` of every record as int32 ``[N, seq_length + 1]``, through MindDataset."""
    import mindspore.dataset as mds
    width = int(seq_length) + 1
    try:
        ds = mds.MindDataset(list(files), columns_list=[COLUMN], shuffle=False)
        n = ds.get_dataset_size()
        table = np.empty((n, width), np.int32)
        for k, (ids,) in enumerate(ds.create_tuple_iterator(output_numpy=True, num_epochs=1)):
            ids = np.asarray(ids).reshape(-1)
            if ids.size != width:
                raise DataError(f"{files[0]}{' ...' if len(files) > 1 else ''}: record {k} has {ids.size} "
                                f"input_ids; data.seq_length {seq_length} needs {width} (seq_length + 1)")
            table[k] = ids
    except DataError:
        raise
    except (RuntimeError, ValueError, TypeError) as e:  # MindSpore's reader: no such column, not MindRecord
        raise DataError(f"{', '.join(files)}: cannot read the '{COLUMN}' column as MindRecord: {e}") from None
    if n == 0:
        raise DataError(f"{', '.join(files)}: the MindRecord holds no record")
    return table


def _files_key(files: Sequence[str], seq_length: int) -> str:
    text = repr([(os.path.basename(f), os.path.getsize(f), os.path.getmtime(f)) for f in files]) + str(seq_length)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def load_table(files: Sequence[str], seq_length: int, cache_dir=None) -> np.ndarray:
    """:func:`read_records`, cached as ``<cache_dir>/mindrecord-<key>.npy`` (memory-mapped)."""
    if not cache_dir:
        return read_records(files, seq_length)
    path = os.path.join(os.fspath(cache_dir), f"mindrecord-{_files_key(files, seq_length)}.npy")
    if not os.path.isfile(path):
        table = read_records(files, seq_length)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "wb") as fh:
            np.save(fh, table)
        os.replace(tmp, path)
    return np.load(path, mmap_mode="r")


class MindRecordDataset:
    """``len(ds)``, ``ds[i]``, ``ds.fill_batch(indices)``, ``ds.fingerprint()`` over MindRecord
    samples (see the module doc); the face the loader uses for Megatron datasets too."""

    def __init__(self, table: np.ndarray, files: Sequence[str], options: SampleOptions, shuffle: bool = False,
                 seed: int = 1234):
        if options.compressed_eod_mask or not options.add_extra_token:
            raise DataError("MindRecord samples hold seq_length + 1 tokens; compressed_eod_mask and "
                            "add_extra_token=False are not supported for them")
        self.seq_length, self.add_extra_token = table.shape[1] - 1, True   # the source's own, as the engine's
        options.core_options(self)  # the same option checks as the C++ engine's
        self.table, self.files, self.options = table, list(files), options
        self.shuffle, self.seed = bool(shuffle), int(seed)
        n = table.shape[0]
        self.order = np.random.default_rng(self.seed).permutation(n) if shuffle else np.arange(n)

    def __len__(self) -> int:
        return int(self.table.shape[0])

    def __repr__(self) -> str:
        return f"MindRecordDataset({len(self.files)} file(s), samples={len(self)}, seq_length={self.seq_length})"

    @property
    def field_names(self) -> Tuple[str, ...]:
        names = ("tokens", "labels", "loss_mask", "position_ids")
        return names + (("attention_mask",) if self.options.create_attention_mask else ())

    def text(self, indices: Sequence[int]) -> np.ndarray:
        """The raw L + 1 tokens of samples ``indices`` (after the configured order)."""
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if idx.size and (idx.min() < 0 or idx.max() >= len(self)):
            raise IndexError(f"{self!r}: a sample index of {idx.tolist()[:8]} is out of range")
        return np.asarray(self.table[self.order[idx]], np.int32)

    def fill_batch(self, indices: Sequence[int], out=None) -> Dict[str, np.ndarray]:
        """The fields of samples ``indices`` (a dict of arrays ``[n, L]``, attention_mask ``[n, L, L]``)."""
        fields = sample_fields(self.text(indices), self.options)
        if out is None:
            return fields
        for k, v in fields.items():
            out[k][...] = v
        return out

    def __getitem__(self, i: int) -> Dict[str, np.ndarray]:
        j = int(i) + len(self) if int(i) < 0 else int(i)
        return {k: v[0] for k, v in self.fill_batch([j]).items()}

    def fingerprint(self) -> str:
        """Digest of what determines the samples: the files, their sizes, the order and the options."""
        files = [(os.path.basename(f), os.path.getsize(f)) for f in self.files]
        text = repr((files, self.table.shape, self.shuffle, self.seed, sorted(asdict(self.options).items())))
        return hashlib.sha256(text.encode()).hexdigest()[:32]


def sample_fields(text: np.ndarray, o: SampleOptions) -> Dict[str, np.ndarray]:
    """Training fields of ``text`` ``[n, L + 1]`` by the rules of the C++ engine's ``assemble_fields``:
    pad positions are written as 0 and get no loss; with ``eod_mask_loss`` an EOD input gets no loss;
    positions and attention restart after each EOD when asked (the EOD ends its own document)."""
    inputs, nxt = text[:, :-1], text[:, 1:]
    n, L = inputs.shape
    out = {"tokens": np.where(inputs == o.pad_id, 0, inputs).astype(np.int32),
           "labels": np.where(nxt == o.pad_id, 0, nxt).astype(np.int32),
           "loss_mask": (nxt != o.pad_id).astype(np.float32)}
    is_eod = inputs == o.eod_id if o.eod_id is not None else np.zeros_like(inputs, dtype=bool)
    if o.eod_mask_loss:
        out["loss_mask"][is_eod] = 0.0
    pos = np.broadcast_to(np.arange(L, dtype=np.int64), (n, L))
    # first position of each position's document: one past the last EOD strictly before it
    after_eod = np.zeros((n, L), np.int64)
    after_eod[:, 1:] = np.where(is_eod[:, :-1], pos[:, 1:], 0)
    start = np.maximum.accumulate(after_eod, axis=1)
    out["position_ids"] = (pos - start if o.reset_position_ids else pos).astype(np.int32)
    if o.create_attention_mask:
        keys = np.arange(L)[None, None, :]
        first = start[:, :, None] if o.reset_attention_mask else 0
        out["attention_mask"] = (keys > pos[:, :, None]) | (keys < first)
    return out


def open_mindrecord(paths: Sequence[str], seq_length: int, shuffle: bool = False, seed: int = 1234,
                    cache_dir=None, **options) -> MindRecordDataset:
    """The MindRecord samples of ``paths`` (files or directories of shards), in MindDataset order."""
    opts = sample_options(options)
    files = mindrecord_files(paths)
    return MindRecordDataset(load_table(files, seq_length, cache_dir), files, opts, shuffle, seed)


def dataset_format(paths: Sequence[str], fmt: str = "auto") -> str:
    """``megatron`` or ``mindrecord`` for ``paths`` (``fmt`` auto: detected). A mix is refused:
    blending MindRecord with Megatron datasets is not supported."""
    kinds = [is_mindrecord_path(os.fspath(p)) for p in paths]
    found = "mindrecord" if kinds and all(kinds) else "megatron"
    if any(kinds) and not all(kinds):
        mr = [os.fspath(p) for p, k in zip(paths, kinds) if k]
        other = [os.fspath(p) for p, k in zip(paths, kinds) if not k]
        raise DataError(f"data.prefixes mixes MindRecord {mr} with {other}: blending MindRecord with "
                        "Megatron datasets is not supported; convert one side (mf-preprocess writes both "
                        "formats) or train on one format")
    if fmt != "auto" and fmt != found and (found == "mindrecord" or any(os.path.exists(os.fspath(p)) for p in paths)):
        raise DataError(f"data.format is {fmt} but data.prefixes {[os.fspath(p) for p in paths]} are "
                        f"{'MindRecord' if found == 'mindrecord' else 'not MindRecord'}; set data.format: "
                        f"{found} (or auto)")
    return fmt if fmt != "auto" else found

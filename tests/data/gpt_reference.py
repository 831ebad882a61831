"""A slow, obviously-correct Python transcription of docs/specs/gpt-sampling.md, written
independently of the C++ engine; numpy's legacy RandomState provides the random stream."""
import math
import re

import numpy as np


def parse_split(split):
    w = [float(x) for x in re.findall(r"[.0-9]+", split)]
    w += [0.0] * (3 - len(w))
    a = np.array(w, dtype=np.float64)
    return (a / np.sum(a)).tolist()


def split_ranges(split, num_documents):
    w = parse_split(split)
    c = [0.0]
    for x in w:
        c.append(c[-1] + x)
    out = []
    for i in range(3):
        if c[i + 1] <= c[i]:
            out.append(None)
        else:
            out.append((int(round(c[i] * float(num_documents))), int(round(c[i + 1] * float(num_documents)))))
    return out


def epochs(tokens_per_epoch, num_samples, L, X):
    if num_samples is None:
        return 1
    e, tokens = 1, tokens_per_epoch
    while tokens < num_samples * L + X:
        e += 1
        tokens += tokens_per_epoch
    return e


def document_index(docs, num_epochs, rs, separate):
    if not separate or num_epochs == 1:
        a = np.array(list(docs) * num_epochs, dtype=np.int32)
        rs.shuffle(a)
        return a
    first = document_index(docs, num_epochs - 1, rs, False)
    last = document_index(docs, 1, rs, False)
    return np.concatenate([first, last])


def sample_index(sizes, doc_idx, L, X, num_epochs, T, drop_last):
    if drop_last:
        n = (num_epochs * T - X) // L
    else:
        n = int(math.ceil(np.float32(num_epochs * T - X) / np.float32(L)))
    rows = [(0, 0)]
    d, off = 0, 0
    for _ in range(n):
        remaining = L + X
        while remaining != 0:
            doc_len = int(sizes[doc_idx[d]]) - off
            remaining -= doc_len
            if remaining <= 0:
                off += remaining + doc_len - X
                remaining = 0
            else:
                if d == len(doc_idx) - 1:
                    off = int(sizes[doc_idx[d]]) - X
                    break
                d += 1
                off = 0
        rows.append((d, off))
    return np.array(rows, dtype=np.int64)


def shuffle_index(first, total, rs):
    a = np.arange(first, dtype=np.uint32)
    rs.shuffle(a)
    if first == total:
        return a
    b = np.arange(first, total, dtype=np.uint32)
    rs.shuffle(b)
    return np.concatenate([a, b])


def gpt_indices(sizes, begin, end, L, X, seed, num_samples, drop_last=True):
    """(document index, sample index, shuffle index) of one split."""
    T = int(np.sum(sizes[begin:end], dtype=np.int64))
    E = epochs(T, num_samples, L, X)
    separate = False
    before_last = 0
    if E > 1:
        before_last = ((E - 1) * T - X) // L
        in_last = num_samples - before_last
        per_epoch = (T - X) // L
        separate = in_last < int(0.80 * per_epoch)
    rs = np.random.RandomState(seed)
    doc_idx = document_index(range(begin, end), E, rs, separate)
    samples = sample_index(sizes, doc_idx, L, X, E, T, drop_last)
    n = len(samples) - 1
    shuffle = shuffle_index(before_last if separate else n, n, rs)
    return doc_idx, samples, shuffle


def sample_text(docs, doc_idx, samples, shuffle, i, L, X, pad=-1):
    """Tokens of sample i; `docs` is the list of token arrays of the dataset's sequences."""
    j = shuffle[i]
    (d0, o0), (d1, o1) = samples[j], samples[j + 1]
    if d0 == d1:
        text = list(docs[doc_idx[d0]][o0:o1 + X])
    else:
        text = list(docs[doc_idx[d0]][o0:])
        for d in range(d0 + 1, d1):
            text += list(docs[doc_idx[d]])
        text += list(docs[doc_idx[d1]][:o1 + X])
    text += [pad] * (L + X - len(text))
    return np.array(text, dtype=np.int64)


def fields(text, L, X, pad, eod, eod_mask_loss=False, reset_position_ids=False, reset_attention_mask=False,
           eod_pad_length=None):
    """Megatron's _get_ltor_masks_and_position_ids and the pad handling of GPTDataset.__getitem__."""
    text = np.array(text, dtype=np.int64)
    if X:
        tokens, labels = text[:-1].copy(), text[1:].copy()
    else:
        tokens, labels = text.copy(), np.roll(text, -1)
        labels[-1] = pad
    mask = np.tril(np.ones((L, L)))
    loss_mask = np.ones(L, dtype=np.float32)
    if eod_mask_loss:
        loss_mask[tokens == eod] = 0.0
    pos = np.arange(L, dtype=np.int64)
    eods = pos[tokens == eod] if eod is not None else []
    prev = 0
    for i in eods:
        if reset_attention_mask:
            mask[i + 1:, :i + 1] = 0
        if reset_position_ids:
            pos[i + 1:] -= i + 1 - prev
            prev = i + 1
    out = {"loss_mask": loss_mask, "position_ids": pos, "attention_mask": mask < 0.5}
    loss_mask[labels == pad] = 0.0
    tokens[tokens == pad] = 0
    labels[labels == pad] = 0
    out["tokens"], out["labels"] = tokens, labels
    if eod_pad_length is not None:
        ends = [int(i) + 1 for i in eods]
        if not ends or ends[-1] != L:
            ends.append(L)
        out["actual_seq_len"] = np.array(ends + [L] * (eod_pad_length - len(ends)), dtype=np.int64)
    return out


def blending(weights, size):
    w = np.array(weights, dtype=np.float64)
    w = w / np.sum(w)
    count = [0] * len(w)
    which, sample = [], []
    for s in range(size):
        x = max(float(s), 1.0)
        errors = [w[k] * x - count[k] for k in range(len(w))]
        k = int(np.argmax(errors))  # first maximum: ties go to the lowest k
        which.append(k)
        sample.append(count[k])
        count[k] += 1
    return np.array(which), np.array(sample)


def exhaustive_blending(lengths):
    total = sum(lengths)
    w = [n / total for n in lengths]
    count = [0] * len(lengths)
    active = [k for k in range(len(lengths)) if lengths[k] > 0]
    which, sample = [], []
    for s in range(total):
        x = max(float(s), 1.0)
        k = max(active, key=lambda k: (w[k] * x - count[k], -k))
        which.append(k)
        sample.append(count[k])
        count[k] += 1
        if count[k] == lengths[k]:
            active.remove(k)
    return np.array(which), np.array(sample)

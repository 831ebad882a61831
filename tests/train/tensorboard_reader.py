"""Reads TensorBoard event files back (TFRecord framing + the Event protobuf), for the tests."""
import struct
from collections import defaultdict
from pathlib import Path


def read_events(path):
    from tensorboardX.proto.event_pb2 import Event
    data = Path(path).read_bytes()
    pos = 0
    while pos < len(data):
        (length,) = struct.unpack_from("<Q", data, pos)
        pos += 12                      # length + its masked crc
        event = Event()
        event.ParseFromString(data[pos:pos + length])
        pos += length + 4              # payload + its masked crc
        yield event


def read_scalars(log_dir):
    """{tag: [(step, value), ...]} over every event file in ``log_dir``; text summaries under
    ``"text:" + tag`` as their string."""
    out = defaultdict(list)
    for path in sorted(Path(log_dir).glob("events.out.tfevents.*")):
        for event in read_events(path):
            for v in event.summary.value:
                if v.HasField("tensor") and v.tensor.string_val:
                    out["text:" + v.tag].append(v.tensor.string_val[0].decode())
                else:
                    out[v.tag].append((event.step, v.simple_value))
    return dict(out)

"""mfcore.checkpoint: sharded safetensors checkpoints with a JSON index, atomic and async saves,
loading with re-slicing to another parallel layout, and Hugging Face / MindSpore interchange."""
from mfcore.checkpoint.compat import CheckpointMismatchError
from mfcore.checkpoint.layout import ShardSpec
from mfcore.checkpoint.load import LoadedCheckpoint
from mfcore.checkpoint.manager import CheckpointManager, SaveReport

__all__ = ["CheckpointManager", "CheckpointMismatchError", "LoadedCheckpoint", "SaveReport", "ShardSpec"]

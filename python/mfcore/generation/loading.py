"""A model to generate from or evaluate: a Hugging Face directory (``config.json`` + safetensors),
or an mfcore training checkpoint (a step directory or the run's checkpoint root, newest valid step).

A training checkpoint is read whole: every tensor is re-assembled from the slices each rank saved,
whatever data/tensor/pipeline layout that was (:mod:`mfcore.checkpoint.load`), and the model is
rebuilt from the ``model_config`` its trainer state records.
"""
import os

from mfcore.errors import CheckpointError


def is_hf_directory(path: str) -> bool:
    return os.path.isfile(os.path.join(path, "config.json"))


def load_model(path: str, compute_dtype="float32"):
    """The model at ``path`` (HF directory or training checkpoint), in evaluation mode."""
    if not os.path.exists(path):
        raise CheckpointError(f"{path}: no such checkpoint or model directory")
    if is_hf_directory(path):
        from mfcore.models.hf import from_pretrained
        model = from_pretrained(path, dtype=compute_dtype)
    else:
        from mfcore.checkpoint.hf import model_config_of
        from mfcore.checkpoint.manager import load_checkpoint
        from mfcore.checkpoint.model_state import MODEL_PREFIX, assign_model_arrays
        from mfcore.models import build_model
        ckpt = load_checkpoint(path, names=lambda n: n.startswith(MODEL_PREFIX))
        model = build_model(model_config_of(ckpt.trainer_state, ckpt.path), compute_dtype)
        assign_model_arrays(model, ckpt.tensors, ckpt.path)
    model.set_train(False)
    return model

"""mfcore.io: file formats and file-writing rules shared by every package (no MindSpore, nothing
of the training loop): :mod:`~mfcore.io.safetensors` and :mod:`~mfcore.io.atomic`."""

"""mfcore.io: file formats and file-writing rules shared by every package (no MindSpore, nothing
of the training loop): :mod:`~mfcore.io.safetensors`, :mod:`~mfcore.io.atomic` and
:mod:`~mfcore.io.paths` (paths read from files stay inside their directory)."""

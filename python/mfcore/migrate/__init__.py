"""mfcore.migrate: move over from other frameworks (MindSpore Transformers configs)."""

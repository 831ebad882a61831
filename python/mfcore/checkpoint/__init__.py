"""mfcore.checkpoint"""

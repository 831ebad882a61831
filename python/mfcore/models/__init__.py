"""mfcore.models"""

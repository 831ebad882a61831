"""mfcore.parallel"""

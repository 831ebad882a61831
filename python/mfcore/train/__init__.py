"""mfcore.train"""

"""mfcore.data"""

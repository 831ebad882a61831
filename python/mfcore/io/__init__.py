"""Helpers for reading and writing files safely (path containment, ...)."""

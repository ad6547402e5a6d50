"""Backends: each writes the IR for one target."""

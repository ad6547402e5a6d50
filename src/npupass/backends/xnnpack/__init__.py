"""XNNPACK backend: sparse TFLite and sparse-path qualification report."""

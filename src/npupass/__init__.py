"""npupass: graph-rewriting compiler passes for TFLite models and NPUs."""

__version__ = "0.1.0"

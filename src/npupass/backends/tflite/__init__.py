"""The plain TFLite writer."""

from npupass.backends.tflite.writer import WriteError, serialize_tflite, write_tflite

__all__ = ["WriteError", "serialize_tflite", "write_tflite"]

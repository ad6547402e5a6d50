"""Cortex-M microcontrollers running TensorFlow Lite for Microcontrollers (TFLM), with no NPU.

`compile_cortex_m` is the library entry; `c_source.emit_c` (firmware sources), `lut.compress_lut` (TFLM's
look-up-table weight compression, verified in TFLM) and `runtime_check.check_vela_model` (TFLM's side of an
Ethos-U model) serve the Ethos-U targets too.
"""

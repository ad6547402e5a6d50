"""Glue between the TFLite schema's generated object API and the IR's plain values.

Options tables are converted generically: every field of a `<X>OptionsT` object becomes a dict
entry under its schema (snake_case) name, and enum-typed fields become their enum member names.
Only the few enum-typed field names are listed by hand; the op-to-options pairing and the fields
themselves come from the generated bindings.
"""

from __future__ import annotations

import re
from functools import cache
from typing import Any

import numpy as np
from ai_edge_litert import schema_py_generated as schema

from npupass.errors import UnsupportedFeatureError
from npupass.ir.types import DType


@cache
def enum_members(enum_cls: type) -> dict[str, int]:
    return {k: v for k, v in vars(enum_cls).items() if not k.startswith("_") and isinstance(v, int)}


@cache
def enum_names(enum_cls: type) -> dict[int, str]:
    return {v: k for k, v in enum_members(enum_cls).items()}


TENSOR_TYPES: dict[int, DType] = {code: DType[name] for code, name in enum_names(schema.TensorType).items()}
TENSOR_TYPE_CODES: dict[DType, int] = {dt: code for code, dt in TENSOR_TYPES.items()}
OPTIONS_TYPES: dict[int, str] = enum_names(schema.BuiltinOptions)
OPTIONS2_TYPES: dict[int, str] = enum_names(schema.BuiltinOptions2)

# Option fields whose integers are schema enums. Keys are the object API's attribute names.
_ENUM_FIELDS: dict[str, type] = {
    "padding": schema.Padding,
    "fusedActivationFunction": schema.ActivationFunctionType,
    "weightsFormat": schema.FullyConnectedOptionsWeightsFormat,
    "kernelType": schema.LSTMKernelType,
    "combiner": schema.CombinerType,
    "inDataType": schema.TensorType,
    "outDataType": schema.TensorType,
    "outType": schema.TensorType,
    "outputType": schema.TensorType,
    "idxOutType": schema.TensorType,
    "quantizedBiasType": schema.TensorType,
    "keyDtype": schema.TensorType,
    "valueDtype": schema.TensorType,
    "algorithm": schema.RngAlgorithm,
    "comparisonDirection": schema.StablehloComparisonDirection,
    "compareType": schema.StablehloComparisonType,
    "reduceFunction": schema.ReduceWindowFunction,
    "compositeAttributesFormat": schema.CustomOptionsFormat,
}
# Same attribute name, different meaning per table.
_ENUM_FIELDS_BY_TABLE: dict[tuple[str, str], type] = {
    ("LSHProjectionOptions", "type"): schema.LSHProjectionType,
    ("MirrorPadOptions", "mode"): schema.MirrorPadMode,
}


def _enum_for(table: str, attr: str) -> type | None:
    return _ENUM_FIELDS_BY_TABLE.get((table, attr)) or _ENUM_FIELDS.get(attr)


def camel_to_snake(name: str) -> str:
    return re.sub(r"([A-Z])", lambda m: "_" + m.group(1).lower(), name)


@cache
def _attr_names(table: str) -> dict[str, str]:
    """snake_case field name -> object API attribute, for the schema table `table`."""
    cls = getattr(schema, table + "T", None)
    if cls is None:
        raise UnsupportedFeatureError(f"unknown options table '{table}'")
    return {camel_to_snake(attr): attr for attr in vars(cls())}


def table_to_dict(table: str, obj: Any) -> dict[str, Any]:
    """Plain dict of a generated `<table>T` object; absent (None) fields are left out."""
    result: dict[str, Any] = {}
    for attr, value in vars(obj).items():
        if value is None:
            continue
        enum_cls = _enum_for(table, attr)
        if enum_cls is not None and isinstance(value, int):
            value = enum_names(enum_cls).get(value, value)
        elif isinstance(value, np.ndarray):
            value = value.tolist()
        elif isinstance(value, bytes):
            value = value.decode("utf-8")
        elif isinstance(value, list):
            if any(hasattr(v, "__dict__") for v in value):
                raise UnsupportedFeatureError(f"nested tables inside {table} are not supported")
            value = [v.decode("utf-8") if isinstance(v, bytes) else v for v in value]
        elif hasattr(value, "__dict__"):
            raise UnsupportedFeatureError(f"nested tables inside {table} are not supported")
        result[camel_to_snake(attr)] = value
    return result


def dict_to_table(table: str, values: dict[str, Any]) -> Any:
    """The generated `<table>T` object for a plain dict made by table_to_dict."""
    attrs = _attr_names(table)
    obj = getattr(schema, table + "T")()
    for key, value in values.items():
        attr = attrs.get(key)
        if attr is None:
            raise UnsupportedFeatureError(f"{table} has no field '{key}' (fields: {', '.join(sorted(attrs))})")
        enum_cls = _enum_for(table, attr)
        if isinstance(value, np.ndarray):
            value = value.tolist()
        if enum_cls is not None and isinstance(value, str):
            members = enum_members(enum_cls)
            if value not in members:
                raise UnsupportedFeatureError(f"{table}.{key} = '{value}' is not one of {', '.join(members)}")
            value = members[value]
        setattr(obj, attr, value)
    return obj


def options_union(options_type: str) -> tuple[int, int]:
    """(1 or 2, type code): which options union of Operator holds `options_type`, and its code."""
    for union, codes in ((1, enum_members(schema.BuiltinOptions)), (2, enum_members(schema.BuiltinOptions2))):
        if options_type in codes:
            return union, codes[options_type]
    raise UnsupportedFeatureError(f"unknown options table '{options_type}'")


@cache
def _defaults(table: str) -> dict[str, Any]:
    return table_to_dict(table, getattr(schema, table + "T")())


def default_options(table: str) -> dict[str, Any]:
    """Every field of the options table `table` at its schema default (a fresh dict to fill in)."""
    return dict(_defaults(table))


def non_default_options(options_type: str | None, options: dict[str, Any]) -> dict[str, Any]:
    """The options whose values differ from the schema's defaults (what a reader of a table needs)."""
    if options_type is None:
        return dict(options)
    defaults = _defaults(options_type)
    return {k: v for k, v in options.items() if defaults.get(k, None) != v}

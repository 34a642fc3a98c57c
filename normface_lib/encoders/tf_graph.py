"""A small reader of TensorFlow frozen ``GraphDef`` files (protobuf wire format, numpy only).

Only what is needed to pull the constant weights and the op graph out of a frozen inference graph: no TensorFlow,
no ``protobuf`` package. Field numbers follow TensorFlow's public ``.proto`` definitions:

* ``GraphDef``: ``node`` = 1 (repeated ``NodeDef``)
* ``NodeDef``: ``name`` = 1, ``op`` = 2, ``input`` = 3 (repeated string), ``attr`` = 5 (map<string, AttrValue>:
  entry ``key`` = 1, ``value`` = 2)
* ``AttrValue``: ``list`` = 1, ``s`` = 2, ``i`` = 3, ``f`` = 4, ``b`` = 5, ``type`` = 6, ``shape`` = 7, ``tensor`` = 8
* ``TensorProto``: ``dtype`` = 1, ``tensor_shape`` = 2, ``tensor_content`` = 4 (raw little-endian), ``float_val`` = 5
  (packed float32), ``int_val`` = 7 (packed varint)
* ``TensorShapeProto``: ``dim`` = 2; ``Dim``: ``size`` = 1

Protobuf wire types: 0 = varint, 1 = 64-bit, 2 = length-delimited, 5 = 32-bit.
"""
from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np

from ..core.errors import InputError

# TensorFlow DataType enum values we understand -> numpy dtype
_TF_DTYPES = {1: np.float32, 2: np.float64, 3: np.int32, 4: np.uint8, 9: np.int64, 10: np.bool_}


def _varint(buf: memoryview, pos: int) -> tuple[int, int]:
    """Decode a base-128 varint at ``pos``; return (value, new position)."""
    result = 0
    shift = 0
    while True:
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift > 70:
            raise InputError("corrupt protobuf: varint longer than 10 bytes; the file is not a TensorFlow GraphDef.")


def iter_fields(buf: memoryview) -> Iterator[tuple[int, int, Any]]:
    """Yield ``(field_number, wire_type, value)`` for each field of one protobuf message.

    ``value`` is an ``int`` for varint / fixed64 / fixed32 fields (fixed ones as raw unsigned integers) and a
    ``memoryview`` slice for length-delimited fields.
    """
    pos, end = 0, len(buf)
    while pos < end:
        key, pos = _varint(buf, pos)
        num, wt = key >> 3, key & 7
        if wt == 0:
            val, pos = _varint(buf, pos)
        elif wt == 1:
            val = int.from_bytes(buf[pos:pos + 8], "little")
            pos += 8
        elif wt == 2:
            n, pos = _varint(buf, pos)
            val = buf[pos:pos + n]
            pos += n
        elif wt == 5:
            val = int.from_bytes(buf[pos:pos + 4], "little")
            pos += 4
        else:
            raise InputError(f"corrupt protobuf: unsupported wire type {wt} at byte {pos}; the file is not a "
                             "TensorFlow GraphDef (or uses deprecated group fields).")
        if pos > end:
            raise InputError("corrupt protobuf: a field runs past the end of its message; the file is truncated.")
        yield num, wt, val


def _packed_varints(buf: memoryview) -> list[int]:
    out, pos = [], 0
    while pos < len(buf):
        v, pos = _varint(buf, pos)
        out.append(v)
    return out


def _shape(buf: memoryview) -> tuple[int, ...]:
    dims = []
    for num, _, val in iter_fields(buf):
        if num == 2:  # Dim
            size = 0
            for n2, _, v2 in iter_fields(val):
                if n2 == 1:
                    size = v2 - (1 << 64) if v2 >= 1 << 63 else v2  # int64 (-1 = unknown)
            dims.append(size)
    return tuple(dims)


def parse_tensor(buf: memoryview) -> np.ndarray:
    """Decode a ``TensorProto`` into a numpy array (float32 / float64 / int32 / int64 / uint8 / bool).

    A scalar stored as a single ``float_val`` / ``int_val`` for a larger shape is broadcast, as TensorFlow does.
    """
    dtype_code, shape, content = 1, (), None
    floats: list[float] = []
    ints: list[int] = []
    for num, wt, val in iter_fields(buf):
        if num == 1:
            dtype_code = val
        elif num == 2:
            shape = _shape(val)
        elif num == 4:
            content = bytes(val)
        elif num == 5:
            if wt == 2:
                floats.extend(np.frombuffer(bytes(val), "<f4").tolist())
            else:
                floats.append(struct.unpack("<f", val.to_bytes(4, "little"))[0])
        elif num in (7, 10, 11):  # int_val, int64_val, bool_val
            ints.extend(_packed_varints(val) if wt == 2 else [val])
    if dtype_code not in _TF_DTYPES:
        raise InputError(f"TensorProto dtype {dtype_code} is not supported by this reader (float/int/bool only).")
    dt = np.dtype(_TF_DTYPES[dtype_code]).newbyteorder("<")
    count = int(np.prod(shape)) if shape else 1
    if content is not None:
        arr = np.frombuffer(content, dt).astype(dt.newbyteorder("="))
    elif floats:
        arr = np.asarray(floats, dt)
    elif ints:
        arr = np.asarray([(i - (1 << 64)) if i >= 1 << 63 else i for i in ints]).astype(dt)
    else:
        arr = np.zeros(count, dt)
    if arr.size == 1 and count != 1:
        arr = np.full(count, arr[0], dt)
    if arr.size != count:
        raise InputError(f"TensorProto holds {arr.size} values but its shape {shape} needs {count}; the file is corrupt.")
    return arr.reshape(shape)


def _attr_value(buf: memoryview) -> Any:
    for num, wt, val in iter_fields(buf):
        if num == 8:
            return parse_tensor(val)
        if num == 7:
            return _shape(val)
        if num == 2:
            return bytes(val).decode("utf-8", "replace")
        if num == 3:
            return val - (1 << 64) if val >= 1 << 63 else val
        if num == 4:
            return struct.unpack("<f", val.to_bytes(4, "little"))[0]
        if num in (5, 6):
            return val
        if num == 1:  # ListValue: s=2, i=3 (packed), f=4 (packed)
            items: list[Any] = []
            for n2, w2, v2 in iter_fields(val):
                if n2 == 2:
                    items.append(bytes(v2).decode("utf-8", "replace"))
                elif n2 == 3:
                    items.extend(_packed_varints(v2) if w2 == 2 else [v2])
                elif n2 == 4:
                    items.extend(np.frombuffer(bytes(v2), "<f4").tolist() if w2 == 2
                                 else [struct.unpack("<f", v2.to_bytes(4, "little"))[0]])
            return items
    return None


@dataclass
class Node:
    """One ``NodeDef``: ``name``, ``op``, ``inputs`` (names, control inputs start with ``^``), ``attr`` (decoded)."""
    name: str
    op: str
    inputs: list[str] = field(default_factory=list)
    attr: dict[str, Any] = field(default_factory=dict)


def parse_node(buf: memoryview) -> Node:
    """Decode one ``NodeDef`` message."""
    node = Node("", "")
    for num, _, val in iter_fields(buf):
        if num == 1:
            node.name = bytes(val).decode()
        elif num == 2:
            node.op = bytes(val).decode()
        elif num == 3:
            node.inputs.append(bytes(val).decode())
        elif num == 5:
            key, value = "", None
            for n2, _, v2 in iter_fields(val):
                if n2 == 1:
                    key = bytes(v2).decode()
                elif n2 == 2:
                    value = _attr_value(v2)
            node.attr[key] = value
    return node


def read_graph(path: str | os.PathLike) -> dict[str, Node]:
    """Read a frozen ``GraphDef`` file; return its nodes by name, in file order.

    Constant weights are in ``nodes[name].attr["value"]`` (numpy arrays) for ``op == "Const"`` nodes.
    Raises :class:`InputError` if the file is not a readable GraphDef.
    """
    with open(path, "rb") as f:
        data = memoryview(f.read())
    nodes: dict[str, Node] = {}
    for num, wt, val in iter_fields(data):
        if num == 1 and wt == 2:
            n = parse_node(val)
            nodes[n.name] = n
    if not nodes:
        raise InputError(f"{path} contains no GraphDef nodes; is it a frozen TensorFlow graph (.pb)?")
    return nodes


def resolve(nodes: dict[str, Node], name: str, through: tuple[str, ...] = ("Identity",)) -> Node:
    """Follow ``name`` (dropping a ``:0`` output suffix) through pass-through ops such as ``Identity``."""
    node = nodes[name.split(":")[0].lstrip("^")]
    while node.op in through:
        node = nodes[node.inputs[0].split(":")[0]]
    return node


def const(nodes: dict[str, Node], name: str) -> np.ndarray:
    """The numpy value of the constant feeding ``name`` (through ``Identity`` ops)."""
    node = resolve(nodes, name)
    if node.op != "Const":
        raise InputError(f"node {name} resolves to op {node.op}, not a Const")
    return node.attr["value"]

"""The operators an ONNX file would run, read from its bytes without the onnx package (which the runtime does not
need): a graph that can loop is refused before onnxruntime sees it.

ONNX files are protocol buffers: ModelProto field 7 is the graph, whose field 1 holds the nodes; field 25 holds
local functions, whose field 7 holds theirs; a node's field 4 is its operator. Only these are walked; the weights
(the bulk of a file) are skipped by their length.
"""

from __future__ import annotations

from collections.abc import Iterator

#: Operators that run a subgraph a number of times the file decides: a trip count of 2**62 runs for ever. The
#: exporter writes none of them for the nets of this package.
LOOPING = frozenset({"Loop", "Scan", "If", "SequenceMap"})
_MODEL_GRAPH, _MODEL_FUNCTIONS, _GRAPH_NODES, _FUNCTION_NODES, _NODE_OP = 7, 25, 1, 7, 4


class MalformedError(ValueError):
    """Bytes that are not a protocol buffer message."""


def operators(data: bytes) -> set[str]:
    """The operator types of the nodes of the model's graph and of its local functions."""
    found: set[str] = set()
    for field, start, end in _messages(data, 0, len(data)):
        if field == _MODEL_GRAPH or field == _MODEL_FUNCTIONS:
            wanted = _GRAPH_NODES if field == _MODEL_GRAPH else _FUNCTION_NODES
            for inner, node_start, node_end in _messages(data, start, end):
                if inner == wanted:
                    for attribute, a, b in _messages(data, node_start, node_end):
                        if attribute == _NODE_OP:
                            found.add(data[a:b].decode("utf-8", "replace"))
    return found


def _messages(data: bytes, start: int, end: int) -> Iterator[tuple[int, int, int]]:
    """(field number, start, end) of each length-delimited field of the message ``data[start:end]``; the others
    (numbers) are skipped."""
    i = start
    while i < end:
        key, i = _varint(data, i, end)
        field, kind = key >> 3, key & 7
        if kind == 0:
            _, i = _varint(data, i, end)
        elif kind == 1:
            i += 8
        elif kind == 5:
            i += 4
        elif kind == 2:
            length, i = _varint(data, i, end)
            if i + length > end:
                raise MalformedError("a field runs past the end of its message")
            yield field, i, i + length
            i += length
        else:
            raise MalformedError(f"wire type {kind}")
    if i != end:
        raise MalformedError("a field runs past the end of its message")


def _varint(data: bytes, i: int, end: int) -> tuple[int, int]:
    value = shift = 0
    for j in range(i, min(end, i + 10)):
        value |= (data[j] & 0x7F) << shift
        if data[j] < 0x80:
            return value, j + 1
        shift += 7
    raise MalformedError("a number runs past the end of its message")

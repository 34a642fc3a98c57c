"""Regenerate ``canonical_face_model.obj`` from the Apache-2.0 npm package ``@mediapipe/face_mesh``.

Usage (needs npm and network access to the npm registry; not run by the library or tests)::

    npm pack @mediapipe/face_mesh@0.4.1657299874      # sha256 c08a7e07...3bc7, see data/README.md
    tar xzf mediapipe-face_mesh-0.4.1657299874.tgz
    python tools/extract_mediapipe_mesh.py package/ normface_lib/assets/canonical_face_model.obj

The package's ``face_mesh_solution_packed_assets.data`` concatenates several files; its loader script lists them
with byte offsets. One of them, ``geometry_pipeline_metadata_landmarks.binarypb``, is a protocol-buffer message
``GeometryPipelineMetadata`` whose field 1 is a ``Mesh3d``: field 3 ``vertex_buffer`` (5 floats per vertex: x, y, z in
centimetres, u, v), field 4 ``index_buffer`` (triangles, 3 vertex indices each). This script reads that message with
a few lines of protobuf wire-format decoding (no protobuf dependency) and writes a Wavefront OBJ with ``v`` and ``vt``
lines and 1-based ``f v/vt`` faces (vertex i has texture coordinate i).
"""
from __future__ import annotations

import json
import re
import struct
import sys
from pathlib import Path


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    out = shift = 0
    while True:
        b = buf[i]
        i += 1
        out |= (b & 0x7F) << shift
        shift += 7
        if b < 0x80:
            return out, i


def _fields(buf: bytes):
    """Yield (field number, wire type, value) for one message; value is int or bytes."""
    i = 0
    while i < len(buf):
        key, i = _varint(buf, i)
        num, wt = key >> 3, key & 7
        if wt == 0:
            val, i = _varint(buf, i)
        elif wt == 1:
            val, i = buf[i:i + 8], i + 8
        elif wt == 2:
            n, i = _varint(buf, i)
            val, i = buf[i:i + n], i + n
        elif wt == 5:
            val, i = buf[i:i + 4], i + 4
        else:
            raise ValueError(f"unsupported wire type {wt}")
        yield num, wt, val


def parse_mesh(meta: bytes) -> tuple[list[tuple[float, ...]], list[tuple[int, int, int]]]:
    mesh = next(v for n, wt, v in _fields(meta) if n == 1 and wt == 2)
    floats: list[float] = []
    idx: list[int] = []
    for n, wt, v in _fields(mesh):
        if n == 3 and wt == 5:
            floats.append(struct.unpack("<f", v)[0])
        elif n == 3 and wt == 2:
            floats.extend(struct.unpack(f"<{len(v) // 4}f", v))
        elif n == 4 and wt == 0:
            idx.append(v)
        elif n == 4 and wt == 2:
            j = 0
            while j < len(v):
                x, j = _varint(v, j)
                idx.append(x)
    verts = [tuple(floats[k:k + 5]) for k in range(0, len(floats), 5)]
    tris = [tuple(idx[k:k + 3]) for k in range(0, len(idx), 3)]
    return verts, tris


def main(package_dir: str, out_path: str) -> None:
    pkg = Path(package_dir)
    loader = (pkg / "face_mesh_solution_packed_assets_loader.js").read_text()
    entries = [json.loads("{" + m + "}") for m in re.findall(r'\{("filename"[^}]*)\}', loader)]
    entry = next(e for e in entries if e["filename"].endswith("geometry_pipeline_metadata_landmarks.binarypb"))
    blob = (pkg / "face_mesh_solution_packed_assets.data").read_bytes()[entry["start"]:entry["end"]]
    verts, tris = parse_mesh(blob)
    lines = ["# MediaPipe canonical face model (468 vertices), Apache-2.0, Copyright Google LLC.",
             "# Extracted from npm @mediapipe/face_mesh@0.4.1657299874 (geometry_pipeline_metadata_landmarks.binarypb)",
             "# by data/mesh/extract_mediapipe_mesh.py. Units: centimetres; +y up, +z towards the viewer."]
    lines += [f"v {x:.6f} {y:.6f} {z:.6f}" for x, y, z, _, _ in verts]
    lines += [f"vt {u:.6f} {v:.6f}" for _, _, _, u, v in verts]
    lines += [f"f {a + 1}/{a + 1} {b + 1}/{b + 1} {c + 1}/{c + 1}" for a, b, c in tris]
    Path(out_path).write_text("\n".join(lines) + "\n")
    print(f"{len(verts)} vertices, {len(tris)} triangles -> {out_path}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])

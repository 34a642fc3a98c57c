"""A portable training pack: a data set preprocessed once, readable where the face tooling is not (a GPU node with
torch, torchvision, numpy and Pillow; no facenet-pytorch detector, dlib or face packages).

A pack is a folder (``normface pack``, :func:`write_pack`):

- ``pack.json``: the manifest: version, profile, crop side, what each split holds, the mean shape, the encoder file,
  how far the exported encoder's embeddings lie from the original's (measured on ORL photos), the sha256 of every
  file (verified on reading), provenance;
- ``<split>.npz`` per table (``train``, ``unseen_people``, and held-out sets such as ``expressions``): the canonical
  crops as JPEG bytes (one ``uint8`` array and its offsets: no pickled objects), landmarks, people, targets, the input
  mask; training rows are stored once and mirrored on reading when the manifest says so;
- ``encoder-<name>-<dtype>.safetensors``: the frozen encoder's weights (:mod:`normface_lib.encoders.export`);
- ``features-train.safetensors``: that encoder's features and embeddings of the (mirrored) training table, which
  reading installs in the feature cache, so a cached-feature run needs no encoder pass.

Reading (:func:`pack_tables`, the data set ``"pack"`` of :data:`~normface_lib.data.DATASETS`) rebuilds the same
:class:`~normface_lib.data.FaceTable` s (targets registered onto the mean shape by the spline warp, in torch).
"""
from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from PIL import Image

from .. import faces
from ..core import resources
from ..core.errors import ChecksumError, InputError, OverwriteError
from .tables import FaceTable, table_from_crops

PACK_VERSION = 1
MANIFEST = "pack.json"
#: Splits a pack's training part holds (held-out sets travel under their data-set names).
TRAIN_SPLITS = ("train", "unseen_people")


def _encode_jpeg(images: torch.Tensor, quality: int) -> tuple[np.ndarray, np.ndarray]:
    blobs = []
    for im in images:
        buf = io.BytesIO()
        Image.fromarray(faces.to_uint8_hwc(im)).save(buf, format="JPEG", quality=quality, subsampling=0)
        blobs.append(np.frombuffer(buf.getvalue(), np.uint8))
    offsets = np.cumsum([0] + [len(b) for b in blobs]).astype(np.int64)
    return (np.concatenate(blobs) if blobs else np.zeros(0, np.uint8)), offsets


def _decode_jpeg(data: np.ndarray, offsets: np.ndarray) -> torch.Tensor:
    out = [np.asarray(Image.open(io.BytesIO(data[offsets[i]:offsets[i + 1]].tobytes())).convert("RGB"))
           for i in range(len(offsets) - 1)]
    return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).float().div_(255.0)


def _real_rows(table: FaceTable) -> torch.Tensor:
    return torch.tensor([i for i, p in enumerate(table.photo_ids) if not str(p).endswith("+m")], dtype=torch.long)


def _write_table(path: Path, table: FaceTable, quality: int) -> dict:
    """One table (its real photos: mirror images are rebuilt on reading) as ``<split>.npz``."""
    rows = _real_rows(table)
    if len(rows) != len(table):  # a mirrored table: keep the first half's people, targets and rows
        half = len(rows)
        people = [p for p in table.people if not p.endswith("+m")]
        target_row = table.target_row[:len(table.target_row) // 2]
        target_of = None if table.target_of is None else table.target_of[:half]
    else:
        people, target_row, target_of = list(table.people), table.target_row, table.target_of
    crops, offsets = _encode_jpeg(table.images[rows], quality)
    arrays = {"crops": crops, "offsets": offsets, "landmarks": table.landmarks[rows].numpy().astype(np.float32),
              "person": table.person[rows].numpy().astype(np.int64),
              "photo_ids": np.array([str(table.photo_ids[i]) for i in rows.tolist()]),
              "people": np.array(people), "target_row": target_row.numpy().astype(np.int64),
              "target_of": (np.zeros(0, np.int64) if target_of is None else target_of.numpy().astype(np.int64)),
              "input_mask": table.input_mask[rows].numpy()}

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)

    resources.atomic_write(path, write)
    return {"file": path.name, "rows": int(len(rows)), "people": len(people), "mirror": len(rows) != len(table),
            "source": table.source, "training_inputs": table.training_inputs}


def write_pack(out: str | os.PathLike, tables: Mapping[str, FaceTable], held_out: Mapping[str, FaceTable] | None = None,
               encoder=None, encoder_dtype: str = "int8", quality: int = 92, check_images: torch.Tensor | None = None,
               settings: Mapping[str, Any] | None = None, force: bool = False) -> Path:
    """Write a pack (see the module docstring) into the new folder ``out``.

    Args:
        tables: ``{"train": FaceTable[, "unseen_people": FaceTable]}`` of one data set and crop side (training
            table mirrored or not: mirror images are rebuilt on reading).
        held_out: other data sets' held-out people (:func:`~normface_lib.data.held_out_table`), e.g.
            ``{"expressions": ...}``.
        encoder: the frozen :class:`~normface_lib.encoders.FaceEncoder` to export (None: none travels; the training
            features are then not stored either).
        encoder_dtype: ``"int8"`` (per output channel), ``"fp16"`` or ``"fp32"``.
        quality: JPEG quality of the crops (4:4:4 chroma).
        check_images: ``[N,3,S,S]`` crops on which to measure the exported encoder against the original (ORL).
        settings: what made the pack (profile, data set...), recorded in the manifest.
        force: replace an existing pack at ``out`` (only its own files are removed).

    Returns:
        ``out``. Raises :class:`OverwriteError` when ``out`` holds anything and ``force`` is not set.
    """
    from safetensors.torch import save_file

    from ..core.provenance import provenance
    from ..encoders import encode, encoder_key, load_encoder
    from ..encoders.export import export_weights, exported_difference

    out = Path(out)
    if out.exists() and any(out.iterdir()):
        if not force:
            raise OverwriteError(f"{out} is not empty; choose a new folder for the pack or pass force=True.")
        if not (out / MANIFEST).exists():
            raise OverwriteError(f"{out} holds files that are not a normface pack; choose another folder.")
        for f in json.loads((out / MANIFEST).read_text()).get("files", {}):
            (out / f).unlink(missing_ok=True)
        (out / MANIFEST).unlink()
    out.mkdir(parents=True, exist_ok=True)
    train = tables["train"]
    manifest: dict[str, Any] = {"version": PACK_VERSION, "size": train.size, "settings": dict(settings or {}),
                                "mean_shape": train.mean_shape.tolist(), "splits": {}, "held_out": {}}
    for split, t in tables.items():
        manifest["splits"][split] = _write_table(out / f"{split}.npz", t, quality)
    for name, t in (held_out or {}).items():
        manifest["held_out"][name] = _write_table(out / f"held-{name}.npz", t, quality)
    if encoder is not None:
        enc_file = out / f"encoder-{encoder.name}-{encoder_dtype}.safetensors"
        export_weights(encoder.net if hasattr(encoder, "net") else encoder, enc_file, encoder_dtype,
                       {"encoder": encoder.name, "layer": encoder.layer or ""})
        exported = load_encoder(encoder.name, layer=encoder.layer, device="cpu", weights_file=enc_file)
        manifest["encoder"] = {"name": encoder.name, "layer": encoder.layer, "file": enc_file.name,
                               "dtype": encoder_dtype}
        if check_images is not None:
            manifest["encoder"]["difference_from_fp32"] = exported_difference(encoder, exported, check_images)
        table = read_tables(out, verify=False, manifest=manifest)["train"]  # as a reader will see it
        enc = encode(exported, table.images, batch=32)
        resources.atomic_write(out / "features-train.safetensors", lambda tmp: save_file(
            {"features": enc["features"], "embeddings": enc["embeddings"]}, tmp,
            metadata={"images_digest": resources.digest(table.images), "encoder_key": encoder_key(exported)}))
    manifest["files"] = {f.name: resources.sha256_file(f) for f in sorted(out.iterdir()) if f.name != MANIFEST}
    manifest["bytes"] = sum((out / f).stat().st_size for f in manifest["files"])
    manifest["provenance"] = provenance(tool="normface pack")
    resources.write_json(manifest, out / MANIFEST)
    return out


def read_manifest(root: str | os.PathLike, verify: bool = True) -> dict:
    """A pack's manifest; with ``verify``, every file's sha256 checked against it (:class:`ChecksumError` names the
    file that differs)."""
    root = Path(root)
    path = root / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"{root} is not a normface pack (no {MANIFEST}); write one with `normface pack`.")
    manifest = json.loads(path.read_text())
    if manifest.get("version") != PACK_VERSION:
        raise InputError(f"{root} is a pack of version {manifest.get('version')}; this normface reads version "
                         f"{PACK_VERSION}: write it again with `normface pack`.")
    if verify:
        for name, want in manifest.get("files", {}).items():
            f = root / name
            if not f.is_file():
                raise FileNotFoundError(f"{f} is missing from the pack; copy the whole folder.")
            got = resources.sha256_file(f)
            if got != want:
                raise ChecksumError(f"{f} has sha256 {got}, the manifest says {want}: the pack was damaged in "
                                    "transit; copy it again.")
    return manifest


def _read_table(path: Path, info: Mapping, mean_shape: torch.Tensor, mirror: bool) -> FaceTable:
    with np.load(path, allow_pickle=False) as z:
        a = {k: z[k] for k in z.files}
    target_of = torch.from_numpy(a["target_of"]) if len(a["target_of"]) else None
    return table_from_crops(_decode_jpeg(a["crops"], a["offsets"]), torch.from_numpy(a["landmarks"]),
                            torch.from_numpy(a["person"]), [str(x) for x in a["photo_ids"]],
                            [str(x) for x in a["people"]], torch.from_numpy(a["target_row"]), mean_shape,
                            mirror=mirror, input_mask=torch.from_numpy(a["input_mask"]),
                            source=f"pack {path.parent.name}: {info.get('source', '')}", target_of=target_of)


def read_tables(root: str | os.PathLike, splits: Sequence[str] | None = None, mirror: bool | None = None,
                verify: bool = True, manifest: Mapping | None = None) -> dict[str, FaceTable]:
    """The pack's training tables: ``{"train": FaceTable, "unseen_people": FaceTable}`` (``splits``: which held-out
    splits; None: all the pack has). ``mirror``: mirror the training table (None: as it was when packed)."""
    root = Path(root)
    manifest = manifest or read_manifest(root, verify)
    ms = torch.tensor(manifest["mean_shape"], dtype=torch.float32)
    splits = [s for s in manifest["splits"] if s != "train"] if splits is None else list(splits)
    missing = [s for s in splits if s not in manifest["splits"]]
    if missing:
        raise InputError(f"the pack at {root} has no split {missing}; it has {list(manifest['splits'])}.")
    out = {}
    for split in ["train"] + splits:
        info = manifest["splits"][split]
        m = info["mirror"] if (mirror is None or split != "train") else bool(mirror)
        out[split] = _read_table(root / info["file"], info, ms, m and split == "train")
    return out


def install_features(root: str | os.PathLike, table: FaceTable, encoder, batch: int = 32) -> bool:
    """Put the pack's training features into the feature cache (:func:`~normface_lib.encoders.cached_encode`'s file
    for ``batch``) when they are the features of ``table``'s crops under ``encoder`` (same crops, encoder, layer and
    weights), so that training finds them without an encoder pass. Returns whether they were installed."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    from ..encoders import encoder_key

    f = Path(root) / "features-train.safetensors"
    if not f.is_file():
        return False
    with safe_open(str(f), "pt") as s:
        meta = dict(s.metadata() or {})
        d = resources.digest(table.images)
        if meta.get("images_digest") != d or meta.get("encoder_key") != encoder_key(encoder):
            return False
        tensors = {k: s.get_tensor(k) for k in ("features", "embeddings")}
    dest = resources.cache_dir("features") / f"{encoder_key(encoder)}-s{table.size}-b{batch}-{d}.safetensors"
    if not dest.exists():
        resources.atomic_write(dest, lambda tmp: save_file(tensors, tmp))
    return True


def encoder_file(root: str | os.PathLike) -> Path | None:
    """The encoder weights a pack carries (None: none)."""
    manifest = read_manifest(root, verify=False)
    enc = manifest.get("encoder")
    return Path(root) / enc["file"] if enc else None


def pack_tables(root, size: int, splits: Sequence[str], mirror: bool, inputs: str = "frontal_neutral",
                **options: Any) -> dict[str, FaceTable]:
    """The data set ``"pack"``: :func:`read_tables` of the pack at ``root``, checked against the requested crop side
    and training inputs."""
    if root is None:
        raise InputError("the data set 'pack' needs the pack's folder: --data-root DIR (written by normface pack).")
    unknown = set(options) - {"verify"}
    if unknown:
        raise InputError(f"the data set 'pack' takes no options {sorted(unknown)}; its settings were fixed when it "
                         "was written.")
    manifest = read_manifest(root, options.get("verify", True))
    if manifest["size"] != size:
        raise InputError(f"the pack at {root} holds {manifest['size']}-px crops, not {size}: set size "
                         f"{manifest['size']} (--set size={manifest['size']}) or write a pack at {size} px.")
    got = manifest["splits"]["train"]["training_inputs"]
    if got != inputs:
        raise InputError(f"the pack at {root} was written with training inputs {got!r}, not {inputs!r}.")
    return read_tables(root, [s for s in splits if s in manifest["splits"]], mirror, verify=False, manifest=manifest)


def pack_held_out(size: int, mean_shape: torch.Tensor, data_root=None, held_out_set: str = "expressions"
                  ) -> FaceTable:
    """A held-out set (``held_out_set``, e.g. ``"expressions"``) that travels in the pack at ``data_root``,
    registered onto ``mean_shape``."""
    manifest = read_manifest(data_root, verify=False)
    if held_out_set not in manifest["held_out"]:
        raise InputError(f"the pack at {data_root} carries no held-out set {held_out_set!r}; it has "
                         f"{list(manifest['held_out'])}.")
    info = manifest["held_out"][held_out_set]
    return _read_table(Path(data_root) / info["file"], info, mean_shape.float(), False)


def encoder_options(dataset: str, data_root) -> dict:
    """The options :func:`~normface_lib.encoders.load_encoder` needs for a model trained on ``dataset``: the exported
    weights a pack carries (``{"weights_file": ...}``), else none."""
    if dataset != "pack" or data_root is None:
        return {}
    f = encoder_file(data_root)
    return {"weights_file": str(f)} if f is not None else {}

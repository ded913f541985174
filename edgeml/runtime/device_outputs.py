"""Device outputs: the file a phone writes with the output tensors of the images it ran.

``edgeml verify ARTIFACT --device-outputs FILE`` reads it and compares every tensor with the
PyTorch reference run on the same images (found by name in ``--images DIR``). The format is
meant to be trivial to write from Kotlin/Java (a ``ByteBuffer`` in little-endian order) or C++:

    offset  size  content
    0       8     magic, the ASCII bytes ``EDGEOUT1``
    8       4     H: length of the header in bytes, unsigned 32-bit little-endian
    12      H     header: UTF-8 JSON object (below)
    12 + H  ...   data: each output's float32 values, little-endian, C order, one output after
                  the other in header order, no padding; the file ends right after the last one

Header (every key required unless marked optional)::

    {"format": "edgeml-device-outputs", "version": 1,
     "artifact": {"file": "mobilemamba_t2_xnnpack_fp32.pte", "sha256": "<hex of the .pte>"},
     "device": "Pixel 8, Android 14" (optional, free text),
     "images": ["cat.jpg", "dog.png", ...],            # N image file names, in row order
     "outputs": [{"name": "logits", "shape": [N, 1000], "dtype": "float32"}, ...]}

Every output's first axis is the image axis and has length N: row ``i`` belongs to
``images[i]``. An app that runs a batch-B program feeds images B at a time and writes only the
rows of real images (not the padding it used to fill the last batch). ``dtype`` is always
``"float32"`` in version 1. The reader checks all of this, including that the file is exactly
as long as the header says, and refuses anything else with a one-line error.
"""
from __future__ import annotations

import json
import math
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgeml.errors import ArtifactError
from edgeml.manifest import atomic_write_bytes

MAGIC = b"EDGEOUT1"
FORMAT_NAME = "edgeml-device-outputs"
VERSION = 1
MAX_HEADER_BYTES = 16 << 20  # a header names images and shapes; 16 MiB is far beyond any real one


@dataclass
class DeviceOutputs:
    """What a device ran: which artifact, on which images, and the output tensors (rows = images)."""

    artifact_file: str
    artifact_sha256: str
    images: list[str]
    outputs: dict[str, np.ndarray]  # name -> float32 array, first axis = len(images)
    device: str = ""
    extra: dict = field(default_factory=dict)  # header keys this version does not interpret

    def rows(self, index: int) -> dict[str, np.ndarray]:
        """The outputs of image ``images[index]``, each with a leading axis of 1."""
        return {name: a[index:index + 1] for name, a in self.outputs.items()}


def write_device_outputs(
    path: str | Path,
    *,
    artifact_file: str,
    artifact_sha256: str,
    images: Sequence[str],
    outputs: Mapping[str, np.ndarray],
    device: str = "",
) -> None:
    """Write ``outputs`` (name -> array whose first axis is ``images``) in the format above."""
    images = [str(n) for n in images]
    specs = []
    chunks = []
    for name, array in outputs.items():
        a = np.ascontiguousarray(np.asarray(array, dtype="<f4"))
        if a.ndim == 0 or a.shape[0] != len(images):
            raise ValueError(f"output {name!r} has shape {a.shape}; its first axis must be the "
                             f"{len(images)} images")
        specs.append({"name": str(name), "shape": [int(s) for s in a.shape], "dtype": "float32"})
        chunks.append(a.tobytes(order="C"))
    header = {"format": FORMAT_NAME, "version": VERSION,
              "artifact": {"file": artifact_file, "sha256": artifact_sha256},
              "images": images, "outputs": specs}
    if device:
        header["device"] = device
    head = json.dumps(header, separators=(",", ":")).encode("utf-8")
    atomic_write_bytes(path, MAGIC + struct.pack("<I", len(head)) + head + b"".join(chunks))


def read_device_outputs(path: str | Path) -> DeviceOutputs:
    """Read and check a device-outputs file (ArtifactError, one line, on anything malformed)."""
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"device outputs {path} do not exist")
    data = path.read_bytes()
    where = path.name
    if data[:8] != MAGIC:
        raise ArtifactError(f"{where} is not an edgeml device-outputs file (it does not start with {MAGIC.decode()})")
    if len(data) < 12:
        raise ArtifactError(f"{where} is truncated (no header length)")
    (head_len,) = struct.unpack("<I", data[8:12])
    if head_len > MAX_HEADER_BYTES or 12 + head_len > len(data):
        raise ArtifactError(f"{where} is truncated or corrupt (header of {head_len} bytes, file of {len(data)})")
    try:
        header = json.loads(data[12:12 + head_len].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ArtifactError(f"{where}: the header is not UTF-8 JSON ({e})") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT_NAME:
        raise ArtifactError(f"{where}: header 'format' must be {FORMAT_NAME!r}")
    if header.get("version") != VERSION:
        raise ArtifactError(f"{where}: version {header.get('version')!r} is not supported (expected {VERSION})")
    try:
        artifact = header["artifact"]
        artifact_file, sha = str(artifact["file"]), str(artifact["sha256"])
        images = header["images"]
        specs = header["outputs"]
    except (KeyError, TypeError) as e:
        raise ArtifactError(f"{where}: header is missing {e}") from None
    if not isinstance(images, list) or not all(isinstance(n, str) and n for n in images) or not images:
        raise ArtifactError(f"{where}: 'images' must be a non-empty list of file names")
    if not isinstance(specs, list) or not specs:
        raise ArtifactError(f"{where}: 'outputs' must be a non-empty list")
    offset = 12 + head_len
    outputs: dict[str, np.ndarray] = {}
    for spec in specs:
        try:
            name, shape, dtype = str(spec["name"]), spec["shape"], spec["dtype"]
        except (KeyError, TypeError) as e:
            raise ArtifactError(f"{where}: an output entry is missing {e}") from None
        if dtype != "float32":
            raise ArtifactError(f"{where}: output {name!r} has dtype {dtype!r}; version {VERSION} stores float32")
        if (not isinstance(shape, list) or not shape or not all(isinstance(s, int) and s >= 0 for s in shape)
                or shape[0] != len(images)):
            raise ArtifactError(f"{where}: output {name!r} has shape {shape!r}; its first axis must be the "
                                f"{len(images)} images")
        if name in outputs:
            raise ArtifactError(f"{where}: output {name!r} appears twice")
        nbytes = 4 * math.prod(shape)
        if offset + nbytes > len(data):
            raise ArtifactError(f"{where} is truncated (output {name!r} needs {nbytes} bytes at offset {offset}, "
                                f"the file has {len(data)})")
        outputs[name] = np.frombuffer(data, dtype="<f4", count=nbytes // 4, offset=offset).reshape(shape).astype(
            np.float32)
        offset += nbytes
    if offset != len(data):
        raise ArtifactError(f"{where} has {len(data) - offset} bytes after the last output (corrupt or wrong header)")
    known = {"format", "version", "artifact", "images", "outputs", "device"}
    return DeviceOutputs(artifact_file, sha, list(images), outputs, str(header.get("device", "")),
                         {k: v for k, v in header.items() if k not in known})

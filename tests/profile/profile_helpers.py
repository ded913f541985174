"""Test helpers for edgeml.profile: small artifacts written through edgeml's own manifest API, and
the fake adb (fake_adb.py) installed first on PATH."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch
from torch import nn

from edgeml.manifest import Manifest, TensorSpec, atomic_write_bytes, atomic_write_json, sha256_file, tool_versions

FAKE_ADB = Path(__file__).with_name("fake_adb.py")

PHONE_PROPS = {
    "ro.product.model": "Pixel 8", "ro.product.brand": "google", "ro.product.manufacturer": "Google",
    "ro.soc.model": "Tensor G3", "ro.soc.manufacturer": "Google", "ro.board.platform": "zuma",
    "ro.product.cpu.abi": "arm64-v8a", "ro.build.version.release": "14", "ro.build.version.sdk": "34",
}


def write_artifact(folder: Path, file_name: str, data: bytes, *, model: str, quant: str = "none",
                   shape=(1, 3, 64, 64), dynamic: dict | None = None, delegation: dict | None = None) -> Path:
    """``data`` as an artifact with a manifest whose sha256 matches (as edgeml.export writes them)."""
    path = Path(folder) / file_name
    atomic_write_bytes(path, data)
    manifest = Manifest(
        artifact={"file": file_name, "format": "pte", "backend": "xnnpack", "sha256": sha256_file(path),
                  "size_bytes": len(data)},
        model={"name": model, "config": {}},
        inputs=[TensorSpec("image", list(shape), "float32", "NCHW", dynamic=dynamic or {})],
        outputs=[TensorSpec("logits", [1, 10], "float32", layout="", kind="logits")],
        preprocessing=None,
        quantization={"scheme": quant},
        delegation=delegation or {},
        tools=tool_versions(),
    )
    atomic_write_json(path.with_suffix(".json"), manifest.to_dict())
    return path


class TinyNet(nn.Module):
    """Two convolutions and a classifier, plus a flip that XNNPACK does not take (a portable op)."""

    def __init__(self, width: int, depth: int = 1):
        super().__init__()
        self.stem = nn.Conv2d(3, width, 3, stride=2, padding=1)
        self.body = nn.Sequential(*[nn.Conv2d(width, width, 3, padding=1) for _ in range(depth)])
        self.fc = nn.Linear(width, 10)

    def forward(self, x):
        y = torch.relu(self.body(torch.relu(self.stem(x))))
        y = torch.flip(y, dims=[3])
        return self.fc(y.mean(dim=(2, 3)))


def tiny_pte(folder: Path, file_name: str, *, width: int, depth: int = 1, resolution: int = 64,
             dynamic: tuple[int, int] | None = None, quant: str = "none") -> Path:
    """A real XNNPACK .pte of TinyNet (square inputs, multiples of 32 in ``dynamic`` range if given)."""
    from edgeml.backends.xnnpack.lowering import lower_to_pte

    torch.manual_seed(0)
    model = TinyNet(width, depth).eval()
    x = torch.randn(1, 3, resolution, resolution)
    shapes = None
    if dynamic:
        side = torch.export.Dim("side", min=dynamic[0] // 32, max=dynamic[1] // 32)
        shapes = {"x": {2: 32 * side, 3: 32 * side}}
    exported = torch.export.export(model, (x,), dynamic_shapes=shapes)
    data, delegation = lower_to_pte(exported)
    dyn = {"2": list(dynamic), "3": list(dynamic)} if dynamic else None
    return write_artifact(folder, file_name, data, model=file_name.rsplit("_", 2)[0], quant=quant,
                          shape=x.shape, dynamic=dyn, delegation=delegation.to_dict())


class FakePhone:
    """The fake adb on PATH, with its configuration and the record of what it was asked."""

    def __init__(self, home: Path, config: dict):
        self.home = home
        self.configure(**config)

    def configure(self, **changes) -> None:
        path = self.home / "config.json"
        config = json.loads(path.read_text()) if path.exists() else {}
        config.update(changes)
        path.write_text(json.dumps(config))

    def calls(self) -> list[list[str]]:
        path = self.home / "calls.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    def shell_calls(self) -> list[str]:
        return [c[c.index("shell") + 1] for c in self.calls() if "shell" in c]

    def state(self) -> dict:
        path = self.home / "state.json"
        return json.loads(path.read_text()) if path.exists() else {}

    def file(self, serial: str, path: str) -> Path:
        return self.home / "fs" / serial / path.lstrip("/")


def install_fake_adb(tmp_path: Path, monkeypatch, **config) -> FakePhone:
    """Put the fake ``adb`` first on PATH (and only it: no real adb can answer instead)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    adb = bin_dir / "adb"
    adb.write_text(f"#!{sys.executable}\n" + FAKE_ADB.read_text())
    adb.chmod(0o755)
    home = tmp_path / "phone"
    home.mkdir(exist_ok=True)
    defaults = {"devices": [["R5CT12345", "device"]], "props": {"R5CT12345": PHONE_PROPS},
                "packages": ["org.pytorch.minibench"], "debuggable": True, "latency_ms": {},
                "results": "ok", "runner": "stderr"}
    monkeypatch.setenv("FAKE_ADB_HOME", str(home))
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.delenv("ANDROID_SERIAL", raising=False)
    return FakePhone(home, defaults | config)


def no_adb_on_path(tmp_path: Path, monkeypatch) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir(exist_ok=True)
    monkeypatch.setenv("PATH", str(empty))
    assert os.environ["PATH"] == str(empty)

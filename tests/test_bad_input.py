"""Every mistake a user can make gets one clear line on stderr, a non-zero exit and no debris."""
import shutil
import subprocess
import sys

import pytest

import edgeml.export as edgeml_export
from edgeml.cli import main
from edgeml.export import export

MODEL = "mobilenetv2"  # smallest zoo model; resolution 64 keeps these exports quick
RES = "64"


def _one_line_error(capsys, code, expected_code=2):
    assert code == expected_code
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "error:" in lines[0], err
    return lines[0]


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    out = tmp_path_factory.mktemp("good")
    return {fmt: export(MODEL, format=fmt, resolution=64, output_dir=out).path for fmt in ("pte", "onnx")}


def test_unknown_model(capsys, tmp_path):
    line = _one_line_error(capsys, main(["export", "mobilenetv3_ulsam", "--output-dir", str(tmp_path)]))
    assert "unknown model" in line and "mobilenetv2_ulsam" in line  # suggests close names
    assert not any(tmp_path.iterdir())


def test_wrong_resolution(capsys, tmp_path):
    line = _one_line_error(capsys, main(["export", MODEL, "--resolution", "100", "--output-dir", str(tmp_path)]))
    assert "multiples of 32" in line


def test_missing_and_unreadable_checkpoint(capsys, tmp_path):
    line = _one_line_error(capsys, main(["export", MODEL, "--checkpoint", str(tmp_path / "nope.pth"),
                                         "--output-dir", str(tmp_path)]))
    assert "does not exist" in line
    bad = tmp_path / "garbage.pth"
    bad.write_bytes(b"\x00not a checkpoint" * 10)
    line = _one_line_error(capsys, main(["export", MODEL, "--checkpoint", str(bad), "--output-dir", str(tmp_path)]))
    assert "cannot read checkpoint" in line
    assert [p.name for p in tmp_path.iterdir()] == ["garbage.pth"]


def test_calibration_folder_without_images(capsys, tmp_path):
    empty = tmp_path / "calib"
    empty.mkdir()
    line = _one_line_error(capsys, main(["export", MODEL, "--quantize", "int8", "--resolution", RES,
                                         "--calibration", str(empty), "--output-dir", str(tmp_path / "o")]))
    assert "holds no images" in line
    assert not (tmp_path / "o").exists()


def test_file_that_is_not_an_image(capsys, good, tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    (folder / "photo.jpg").write_text("this is not a JPEG")
    line = _one_line_error(capsys, main(["verify", str(good["pte"]), "--images", str(folder)]))
    assert "photo.jpg is not a readable image" in line


@pytest.mark.parametrize("fmt", ["pte", "onnx"])
@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_corrupt_artifact_is_rejected(capsys, good, tmp_path, fmt, damage):
    src = good[fmt]
    dst = tmp_path / src.name
    shutil.copy(src, dst)
    shutil.copy(src.with_suffix(".json"), dst.with_suffix(".json"))
    data = bytearray(dst.read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 2]
    else:
        data[len(data) // 3] ^= 0xFF
    dst.write_bytes(bytes(data))
    for cmd in (["verify", str(dst)], ["profile", str(dst), "--runs", "1"]):
        line = _one_line_error(capsys, main(cmd))
        assert "does not match its manifest" in line


def test_missing_or_corrupt_manifest(capsys, good, tmp_path):
    dst = tmp_path / good["pte"].name
    shutil.copy(good["pte"], dst)
    assert "no manifest" in _one_line_error(capsys, main(["verify", str(dst)]))
    dst.with_suffix(".json").write_text("{ not json")
    assert "not valid JSON" in _one_line_error(capsys, main(["verify", str(dst)]))
    assert "does not exist" in _one_line_error(capsys, main(["verify", str(tmp_path / "none.pte")]))


_LOAD_DAMAGED = """
import sys
from edgeml.errors import EdgeMLError
from edgeml.backends.ort.runner import OnnxRunner
from edgeml.runtime.runners import PteRunner
import torch
cls = PteRunner if sys.argv[1].endswith(".pte") else OnnxRunner
try:
    r = cls(sys.argv[1])
    r.run([torch.zeros(*r.input_shapes[0])])
    print("ran")
except EdgeMLError as e:
    print("rejected:", e)
"""


@pytest.mark.parametrize("fmt", ["pte", "onnx"])
def test_damaged_bytes_never_crash_the_process(good, tmp_path, fmt):
    # Bypass the sha256 check and hand damaged bytes straight to the native runtimes: they must
    # reject them (or run them) but never take the process down. Flips hit the header, the
    # middle and the tail, where the flatbuffer/protobuf offsets and the delegate blob live.
    data = good[fmt].read_bytes()
    for i, pos in enumerate((8, 40, len(data) // 2, len(data) - 64)):
        damaged = bytearray(data)
        for k in range(16):
            damaged[min(pos + k, len(damaged) - 1)] ^= 0x5A
        path = tmp_path / f"damaged{i}.{fmt}"
        path.write_bytes(bytes(damaged))
        proc = subprocess.run([sys.executable, "-c", _LOAD_DAMAGED, str(path)], capture_output=True,
                              text=True, timeout=300)
        assert proc.returncode == 0, f"flip at {pos} killed the process (rc {proc.returncode}): {proc.stderr[-500:]}"
        assert proc.stdout.startswith(("rejected:", "ran"))


def test_failed_export_leaves_nothing_and_keeps_the_good_artifact(capsys, good, tmp_path, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    target = out / good["pte"].name
    target.write_bytes(b"previous good artifact")

    def broken_lowering(exported):
        raise RuntimeError("simulated failure in the XNNPACK partitioner")

    monkeypatch.setattr("edgeml.backends.xnnpack.lowering.lower_to_pte", broken_lowering)
    line = _one_line_error(capsys, main(["export", MODEL, "--resolution", RES, "--output-dir", str(out)]))
    assert "lowering to ExecuTorch failed" in line
    assert target.read_bytes() == b"previous good artifact"
    assert sorted(p.name for p in out.iterdir()) == [target.name]  # no temp files, no manifest


def test_export_below_threshold_writes_nothing(capsys, tmp_path):
    line = _one_line_error(capsys, main(["export", MODEL, "--resolution", RES, "--verify", "--min-sqnr", "500",
                                         "--output-dir", str(tmp_path)]), expected_code=3)
    assert "below the 500 dB threshold" in line and "nothing was written" in line
    assert not any(tmp_path.iterdir())


def test_api_errors_are_edgeml_errors(tmp_path):
    from edgeml.errors import EdgeMLError, UsageError

    with pytest.raises(UsageError):
        edgeml_export.export(MODEL, format="tflite", output_dir=tmp_path)
    with pytest.raises(EdgeMLError):
        edgeml_export.export(MODEL, quantize="int3", output_dir=tmp_path)


def _junk_checkpoint(folder, kind: str):
    """Files users pass as --checkpoint that are not a torch.save state_dict."""
    import argparse

    import numpy as np
    import torch

    path = folder / {"text": "weights.pth", "empty": "empty.pth", "json": "config.json", "npy": "weights.npy",
                     "npz": "weights.npz", "folder": "ckpt_dir", "objects": "train_state.pth",
                     "truncated": "cut.pth", "list": "list.pth"}[kind]
    if kind == "text":
        path.write_text("hello, this is a README saved under the wrong name\n")
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "json":
        path.write_text('{"model": "mobilenetv2", "width": 1.0}')
    elif kind == "npy":
        np.save(path, np.zeros((3, 3), dtype=np.float32))
    elif kind == "npz":
        np.savez(path, w=np.zeros(3))
    elif kind == "folder":
        path.mkdir()
    elif kind == "objects":  # a training checkpoint with its argparse options: weights_only refuses it
        torch.save({"model": {"w": torch.zeros(2)}, "args": argparse.Namespace(lr=0.1)}, path)
    elif kind == "truncated":
        torch.save({"w": torch.zeros(4096)}, folder / "full.pth")
        path.write_bytes((folder / "full.pth").read_bytes()[:3000])
    elif kind == "list":
        torch.save([torch.zeros(2)], path)
    return path


@pytest.mark.parametrize("kind, expected", [
    ("text", "it is a text file, not a checkpoint"),
    ("empty", "the file is empty"),
    ("json", "it is a JSON file, not a checkpoint"),
    ("npy", "it is a NumPy array (.npy)"),
    ("npz", "zip archive but not one torch.save wrote"),
    ("folder", "is a folder; pass the checkpoint file"),
    ("objects", "Python objects (argparse.Namespace)"),
    ("truncated", "torch.save archive (truncated or corrupt?)"),
    ("list", "holds no state_dict"),
])
def test_junk_checkpoint(capsys, tmp_path, kind, expected):
    junk = _junk_checkpoint(tmp_path, kind)
    out = tmp_path / "out"
    line = _one_line_error(capsys, main(["export", MODEL, "--checkpoint", str(junk), "--output-dir", str(out)]))
    assert expected in line and junk.name in line, line
    assert "internal error" not in line
    assert not out.exists()


def test_an_onnx_exporter_failure_names_the_node_and_the_reason():
    # torch.onnx.export's own first line names only the failed step; the reason is in its causes.
    from edgeml.backends.ort.lowering import exporter_failure

    def chain():
        try:
            try:
                raise TypeError("int() argument must be a string, not 'SymbolicTensor'")
            except TypeError as e:
                raise RuntimeError("Error when calling function 'aten_remainder_scalar'") from e
        except RuntimeError as e:
            raise ValueError("Error when translating node %remainder") from e

    try:
        try:
            chain()
        except ValueError as e:
            raise RuntimeError("Failed to convert the exported program to an ONNX model. Next steps:\n- ...") from e
    except RuntimeError as top:
        assert exporter_failure(top) == ("Error when translating node %remainder; "
                                         "int() argument must be a string, not 'SymbolicTensor'")
    assert exporter_failure(ValueError("something else\nmore")) == "something else"

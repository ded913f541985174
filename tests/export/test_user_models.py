"""Any PyTorch model in: FILE.py:CALLABLE, package.module:CALLABLE, a Hugging Face directory and an
nn.Module go through the same pipeline as the zoo, from the CLI and from Python; the manifest says
what the model really takes and returns, verify rebuilds it, and bad input is one line with nothing
written."""
from __future__ import annotations

import copy
import json
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

from edgeml.cli import main
from edgeml.errors import ModelSourceError, UsageError
from edgeml.export import export
from edgeml.manifest import read_manifest
from edgeml.models.source import ModelOptions
from edgeml.runtime.verify import verify_artifact

NET = textwrap.dedent('''
    import torch
    from torch import nn


    class TinyNet(nn.Module):
        def __init__(self, num_classes=10, width=8, dict_output=False):
            super().__init__()
            self.dict_output = dict_output
            self.body = nn.Sequential(nn.Conv2d(3, width, 3, 2, 1), nn.BatchNorm2d(width), nn.ReLU(),
                                      nn.Conv2d(width, width, 3, 2, 1, groups=width), nn.ReLU(),
                                      nn.AdaptiveAvgPool2d(1), nn.Flatten())
            self.head = nn.Linear(width, num_classes)

        def forward(self, x):
            f = self.body(x)
            return {"logits": self.head(f), "features": f} if self.dict_output else self.head(f)


    def build(num_classes=10, width=8, dict_output=False):
        return TinyNet(num_classes, width, dict_output)


    def not_a_model():
        return (1, 2)


    def branchy():
        class Branchy(nn.Module):
            def forward(self, x):
                if x.sum() > 0:  # data-dependent control flow: torch.export cannot capture it
                    return x.mean((2, 3))
                return x.amax((2, 3))
        return Branchy()
''')


@pytest.fixture()
def netfile(tmp_path: Path) -> Path:
    path = tmp_path / "tinynet.py"
    path.write_text(NET)
    return path


def _error_line(capsys, code: int, expected: int = 2) -> str:
    assert code == expected
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and "error:" in err[0] and "Traceback" not in err[0], err
    return err[0]


def test_file_callable_from_the_cli_with_arguments_labels_and_verify(netfile, tmp_path, capsys):
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(f"class {i}" for i in range(5)) + "\n")
    out = tmp_path / "art"
    code = main(["export", f"{netfile}:build", "--input-shape", "1x3x64x64", "--model-arg", "num_classes=5",
                 "--model-arg", "width=4", "--labels", str(labels), "--mean", "0.5,0.5,0.5", "--std", "0.25,0.25,0.25",
                 "--resize", "80", "--output-dir", str(out)])
    assert code == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    assert "wrote" in printed and "tinynet_xnnpack_fp32.pte" in printed
    path = out / "tinynet_xnnpack_fp32.pte"
    m = read_manifest(path)
    assert m.model["reference"] == f"{netfile}:build" and m.model["source"] == "file"
    assert m.model["kwargs"] == {"num_classes": 5, "width": 4}
    assert m.model["files"]["code"]["path"] == str(netfile.resolve())
    assert m.model["config"]["num_classes"] == 5 and m.model["config"]["labels"] is None
    assert [(o.name, o.shape, o.kind) for o in m.outputs] == [("logits", [1, 5], "logits")]
    assert m.outputs[0].labels == [f"class {i}" for i in range(5)]
    assert m.preprocessing["mean"] == [0.5] * 3 and m.preprocessing["std"] == [0.25] * 3
    assert (m.preprocessing["crop"], m.preprocessing["resize_shorter"]) == (64, 80)
    assert m.preprocessing["source"] == "options"
    assert m.parity["worst_sqnr_db"] >= 60 and m.parity["outputs"]["logits"]["top1_agreement"] == 1.0
    # verify rebuilds the same model from the file and the arguments (random init under the seed)
    assert main(["verify", str(path)]) == 0
    assert "PASS" in capsys.readouterr().out
    # ... and refuses once the code has changed
    netfile.write_text(NET + "\n# edited\n")
    line = _error_line(capsys, main(["verify", str(path)]))
    assert "changed since export" in line


def test_module_callable_dict_outputs_and_int8(netfile, tmp_path, monkeypatch):
    package = tmp_path / "userpkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "nets.py").write_text(netfile.read_text())
    monkeypatch.syspath_prepend(str(tmp_path))
    art = export("userpkg.nets:build", input_shape=(1, 3, 48, 48), model_kwargs={"dict_output": True},
                 format="onnx", quantize="int8", output_dir=tmp_path / "out")
    m = art.manifest
    assert art.path.name == "nets_ort_int8.onnx" and m.model["source"] == "module"
    assert [(o.name, o.kind) for o in m.outputs] == [("logits", "logits"), ("features", "features")]
    assert "top1_agreement" in m.parity["outputs"]["logits"]
    assert "top1_agreement" not in m.parity["outputs"]["features"]
    assert m.quantization["scheme"] == "int8" and m.quantization["layers"]["total"] >= 2
    report = verify_artifact(art.path)
    assert set(report.parity["outputs"]) == {"logits", "features"}


def test_nn_module_instance_from_python(tmp_path, capsys):
    torch.manual_seed(3)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                          nn.Flatten(), nn.Linear(8, 4)).eval()
    x = torch.rand(1, 3, 32, 32)
    art = export(model, example_inputs=(x,), output_dir=tmp_path)
    m = art.manifest
    assert art.path.name == "sequential_xnnpack_fp32.pte" and m.model["source"] == "instance"
    assert m.inputs[0].shape == [1, 3, 32, 32] and m.outputs[0].shape == [1, 4]
    assert m.model["weights"]["source"] == "in-memory module" and len(m.model["weights"]["sha256"]) == 64
    assert "no --mean/--std given" in art.notes[0]
    assert verify_artifact(art.path, model=model).passed
    other = copy.deepcopy(model)
    with torch.no_grad():
        other[0].weight.add_(1.0)
    with pytest.raises(Exception, match="fingerprint differs"):
        verify_artifact(art.path, model=other)
    capsys.readouterr()
    line = _error_line(capsys, main(["verify", str(art.path)]))
    assert "nn.Module in Python" in line


def test_bad_references_are_one_line_and_write_nothing(netfile, tmp_path, capsys):
    out = tmp_path / "out"
    cases = [
        ([f"{netfile}:missing", "--input-shape", "1x3x32x32"], "has no 'missing'"),
        ([f"{netfile}:not_a_model", "--input-shape", "1x3x32x32"], "returned a tuple, not an nn.Module"),
        ([f"{tmp_path}/nope.py:build", "--input-shape", "1x3x32x32"], "does not exist"),
        ([str(netfile)], "name the callable"),
        ([f"{netfile}:build"], "--input-shape"),
        ([f"{netfile}:build", "--input-shape", "1x1x32x32"], "3 channels"),
        ([f"{netfile}:build", "--input-shape", "1x3x32x32", "--model-arg", "depth=3"], "unexpected keyword"),
        ([f"{netfile}:build", "--input-shape", "1x3x32x32", "--num-classes", "7"], "--num-classes 7"),
        ([f"{netfile}:branchy", "--input-shape", "1x3x32x32"], "capture: torch.export failed"),
        (["no_such_pkg_xyz.nets:build", "--input-shape", "1x3x32x32"], "cannot import no_such_pkg_xyz.nets"),
        (["mobilenetv2_ulsam", "--resolution", "0"], "positive input size"),
        (["mobilenetv2_ulsam", "--input-shape", "1x3x64x64"], "zoo model"),
    ]
    for argv, expected in cases:
        line = _error_line(capsys, main(["export", *argv, "--output-dir", str(out)]))
        assert expected in line, (argv, line)
    assert not out.exists() or not any(out.iterdir())


def test_stage_named_in_errors(netfile, tmp_path, capsys):
    line = _error_line(capsys, main(["export", f"{netfile}:not_a_model", "--input-shape", "1x3x32x32",
                                     "--output-dir", str(tmp_path)]))
    assert "error: build: " in line


def test_zoo_model_with_a_new_head(tmp_path):
    art = export("mobilenetv1", resolution=64, output_dir=tmp_path, format="onnx",
                 model_options=ModelOptions(num_classes=10))
    m = art.manifest
    assert m.model["config"]["num_classes"] == 10 and m.model["config"]["labels"] is None
    assert "ImageNet" not in m.model["config"]["output_description"]
    assert m.outputs[0].shape == [1, 10] and m.model["kwargs"]["num_classes"] == 10
    assert verify_artifact(art.path).passed


def test_checkpoint_with_another_head_says_so(tmp_path, capsys):
    import edgeml

    state = edgeml.create_model("mobilenetv1", num_classes=10).state_dict()
    ckpt = tmp_path / "finetuned.pth"
    torch.save(state, ckpt)
    line = _error_line(capsys, main(["export", "mobilenetv1", "--checkpoint", str(ckpt), "--output-dir",
                                     str(tmp_path / "out")]))
    assert "--num-classes" in line and "size mismatch" in line


def test_below_default_threshold_warns(netfile, tmp_path, capsys, monkeypatch):
    import edgeml.quantize.schemes as schemes

    monkeypatch.setattr(schemes, "default_min_sqnr", lambda name: 500.0)  # fp32 gets ~120 dB: below it
    code = main(["export", f"{netfile}:build", "--input-shape", "1x3x32x32", "--output-dir", str(tmp_path)])
    assert code == 0
    err = capsys.readouterr().err
    assert "warning:" in err and "below the 500 dB default" in err and "edgeml verify` will fail it" in err
    m = json.loads((tmp_path / "tinynet_xnnpack_fp32.json").read_text())
    assert m["parity"]["below_default_threshold"] is True and m["parity"]["threshold_db"] == 500.0


def test_reparameterize_conventions_are_applied(tmp_path):
    from edgeml.export import prepare_for_export

    class RepBlock(nn.Module):
        """RepVGG-style: 3x3 + 1x1 branches in training, one 3x3 conv after switch_to_deploy()."""

        def __init__(self) -> None:
            super().__init__()
            self.k3, self.k1 = nn.Conv2d(4, 4, 3, padding=1), nn.Conv2d(4, 4, 1)
            self.fused: nn.Conv2d | None = None

        def forward(self, x):
            return self.fused(x) if self.fused is not None else self.k3(x) + self.k1(x)

        def switch_to_deploy(self) -> None:
            fused = nn.Conv2d(4, 4, 3, padding=1)
            with torch.no_grad():
                fused.weight.copy_(self.k3.weight + nn.functional.pad(self.k1.weight, (1, 1, 1, 1)))
                fused.bias.copy_(self.k3.bias + self.k1.bias)
            self.fused = fused
            del self.k3, self.k1

    class FuseBlock(nn.Module):
        """timm-style fuse(): returns a new module."""

        def __init__(self) -> None:
            super().__init__()
            self.conv, self.bn = nn.Conv2d(4, 4, 1, bias=False), nn.BatchNorm2d(4)

        def forward(self, x):
            return self.bn(self.conv(x))

        def fuse(self) -> nn.Module:
            from edgeml.export.passes.reparameterize import fold_conv_bn

            return fold_conv_bn(self.conv, self.bn)

    torch.manual_seed(0)
    model = nn.Sequential(RepBlock(), nn.ReLU(), FuseBlock()).eval()
    with torch.no_grad():
        model[2].bn.running_mean.uniform_(-1, 1)
        model[2].bn.running_var.uniform_(0.5, 2)
    x = torch.randn(2, 4, 9, 9)
    prepared = prepare_for_export(model, (x,))
    assert isinstance(model[0].k3, nn.Conv2d), "the pass must not modify its input"
    assert prepared[0].fused is not None and not hasattr(prepared[0], "k3")
    assert isinstance(prepared[2], nn.Conv2d)
    with torch.no_grad():
        assert torch.allclose(prepared(x), model(x), atol=1e-5)


def test_huggingface_directory(tmp_path, capsys):
    transformers = pytest.importorskip("transformers", reason="the hf extra (transformers) is not installed")
    torch.manual_seed(0)
    config = transformers.ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic",
                                       num_labels=3, id2label={0: "cat", 1: "dog", 2: "bird"},
                                       label2id={"cat": 0, "dog": 1, "bird": 2})
    folder = tmp_path / "hf_resnet"
    transformers.ResNetForImageClassification(config).eval().save_pretrained(folder)
    (folder / "preprocessor_config.json").write_text(json.dumps({
        "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5], "size": {"shortest_edge": 72},
        "crop_size": {"height": 64, "width": 64}, "do_center_crop": True}))
    code = main(["export", str(folder), "--format", "onnx", "--output-dir", str(tmp_path / "out")])
    assert code == 0, capsys.readouterr().err
    path = tmp_path / "out" / "hf_resnet_ort_fp32.onnx"
    m = read_manifest(path)
    assert m.model["source"] == "huggingface" and m.model["class"] == "ResNetForImageClassification"
    assert m.inputs[0].shape == [1, 3, 64, 64] and m.preprocessing["resize_shorter"] == 72
    assert m.preprocessing["mean"] == [0.5] * 3 and m.preprocessing["source"] == "preprocessor_config.json"
    assert m.outputs[0].name == "logits" and m.outputs[0].labels == ["cat", "dog", "bird"]
    assert m.parity["worst_sqnr_db"] >= 60
    assert verify_artifact(path).passed


def test_huggingface_patch_sequence_model_takes_an_image(tmp_path, capsys):
    """SigLIP2's NaFlex convention (patches, ``spatial_shapes``, ``pixel_attention_mask``): the
    program takes an image, cut into the transformers processor's channels-last patches."""
    transformers = pytest.importorskip("transformers", reason="the hf extra (transformers) is not installed")
    from edgeml.models.source import HuggingFaceVision

    torch.manual_seed(0)
    vision = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
              "patch_size": 8, "num_patches": 16}
    config = transformers.Siglip2Config(vision_config=vision, num_labels=3)
    model = transformers.Siglip2ForImageClassification(config).eval()
    x = torch.randn(1, 3, 32, 32)
    patches = torch.stack([x[0, :, r * 8:(r + 1) * 8, c * 8:(c + 1) * 8].permute(1, 2, 0).reshape(-1)
                           for r in range(4) for c in range(4)])[None]
    with torch.no_grad():
        ref = model(pixel_values=patches, spatial_shapes=torch.tensor([[4, 4]]),
                    pixel_attention_mask=torch.ones(1, 16, dtype=torch.int64)).logits
        torch.testing.assert_close(HuggingFaceVision(model)(x)[0], ref)
    with pytest.raises(ValueError, match="multiples of 8"):
        HuggingFaceVision(model)(torch.randn(1, 3, 30, 32))
    folder = tmp_path / "hf_siglip2"
    model.save_pretrained(folder)
    code = main(["export", str(folder), "--output-dir", str(tmp_path / "out")])
    assert code == 0, capsys.readouterr().err
    m = read_manifest(tmp_path / "out" / "hf_siglip2_xnnpack_fp32.pte")
    assert m.inputs[0].shape == [1, 3, 32, 32]  # the square grid of its 16-patch budget
    assert m.delegation["portable_ops"] == {} and m.parity["worst_sqnr_db"] >= 60


def test_huggingface_without_transformers(tmp_path, capsys, monkeypatch):
    folder = tmp_path / "hf"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    monkeypatch.setitem(sys.modules, "transformers", None)  # import transformers raises ImportError
    with pytest.raises(ModelSourceError, match=r'pip install -e "\.\[hf\]"'):
        export(str(folder), output_dir=tmp_path / "out")


def test_non_square_and_bad_shapes_are_usage_errors(tmp_path):
    model = nn.Conv2d(3, 2, 1)
    with pytest.raises(UsageError, match="non-square"):
        export(model, input_shape=(1, 3, 32, 48), output_dir=tmp_path)
    with pytest.raises(UsageError, match="one image tensor"):
        export(model, example_inputs=(torch.rand(1, 3, 8, 8), torch.rand(1)), output_dir=tmp_path)



def test_a_search_measures_each_program_once(tmp_path, monkeypatch):
    """The mixed-precision search measures the fully quantized program, and the parity stage the
    program it chose: the same bytes, measured once."""
    import edgeml.runtime.verify as verify

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.ReLU(), nn.Conv2d(8, 8, 3, 2, 1), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4)).eval()
    programs = []
    measure_parity = verify.measure_parity

    def counted(reference, runner, *args, **kwargs):
        programs.append(runner)
        return measure_parity(reference, runner, *args, **kwargs)

    monkeypatch.setattr(verify, "measure_parity", counted)
    art = export(model, example_inputs=(torch.rand(1, 3, 32, 32),), quantize="int8", min_sqnr=5.0, fp32_fallback=True,
                 output_dir=tmp_path)
    assert art.manifest.parity["worst_sqnr_db"] >= 5.0
    assert len(programs) == 1


def test_the_eager_reference_runs_once_per_input():
    from edgeml.export.pipeline import _reference

    calls = []
    model = nn.Linear(3, 2)
    model.register_forward_hook(lambda *_: calls.append(1))
    state = type("State", (), {"module": model, "reference_outputs": {}})()
    run = _reference(state)
    x, y = torch.ones(1, 3), torch.zeros(1, 3)
    assert run(x) is run(x.clone()) and run(y) is not run(x)
    assert len(calls) == 2

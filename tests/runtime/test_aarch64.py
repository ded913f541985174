"""``edgeml verify --on aarch64`` and ``edgeml setup-aarch64`` (edgeml.aarch64).

Most of these need no ARM environment: the missing-tool errors, the CLI options, and the remote
runner's file contract, run by the host's own Python. The last test runs a tiny program on an
emulated cortex-a76 when ``edgeml setup-aarch64`` has built the environment, and skips otherwise.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import edgeml.aarch64.setup as aarch64_setup
from edgeml.aarch64 import DEFAULT_CPUS, Aarch64EnvError, resolve_cpu
from edgeml.aarch64.run import REMOTE_RUNNER, run_calls
from edgeml.aarch64.setup import Aarch64Env
from edgeml.cli import build_parser, main
from edgeml.errors import ArtifactError, EdgeMLError


class _Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4, 5)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = torch.relu(self.conv(x))
        return self.fc(f.mean((2, 3))), f


@pytest.fixture(scope="module")
def tiny_pte(tmp_path_factory) -> tuple[Path, nn.Module]:
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    torch.manual_seed(0)
    model = _Tiny().eval()
    ep = torch.export.export(model, (torch.randn(2, 3, 8, 8),))
    et = to_edge_transform_and_lower(ep, partitioner=[XnnpackPartitioner()]).to_executorch()
    path = tmp_path_factory.mktemp("tiny") / "tiny.pte"
    path.write_bytes(et.buffer)
    return path, model


def _calls(n: int = 3) -> list[list[np.ndarray]]:
    rng = np.random.default_rng(0)
    return [[rng.standard_normal((2, 3, 8, 8), dtype=np.float32)] for _ in range(n)]


class _HostPython(Aarch64Env):
    """The remote runner under the host's own Python: run_calls' plumbing without qemu."""

    def command(self, cpu, argv):
        return [sys.executable, *argv]

    def environ(self, cpu):
        import os

        return dict(os.environ)


# ------------------------------------------------------------------- host tools and environment

def _no_tools(monkeypatch, *missing: str) -> None:
    real = aarch64_setup.shutil.which
    monkeypatch.setattr(aarch64_setup.shutil, "which", lambda name: None if name in missing else real(name))


def test_missing_qemu_is_one_line_naming_the_package(monkeypatch):
    _no_tools(monkeypatch, "qemu-aarch64-static", "qemu-aarch64")
    with pytest.raises(Aarch64EnvError) as e:
        aarch64_setup.find_qemu()
    assert "\n" not in str(e.value) and "qemu-user-static" in str(e.value)
    assert isinstance(e.value, EdgeMLError)


def test_setup_names_every_missing_host_package_on_one_line(monkeypatch, tmp_path, capsys):
    _no_tools(monkeypatch, "qemu-aarch64-static", "qemu-aarch64", "mmdebstrap")
    assert main(["setup-aarch64", "--home", str(tmp_path / "env")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("edgeml setup-aarch64: error:")
    assert "qemu-user-static" in err[0] and "apt-get install mmdebstrap" in err[0]
    assert not (tmp_path / "env").exists()  # nothing built before the tools are there


def test_old_qemu_is_refused_with_the_backports_hint(monkeypatch):
    monkeypatch.setattr(aarch64_setup.shutil, "which", lambda name: "/usr/bin/" + name)
    monkeypatch.setattr(aarch64_setup, "host_codename", lambda: "bookworm")

    class _Done:
        stdout = "qemu-aarch64 version 7.2.13 (Debian 1:7.2+dfsg-7+deb12u18)\n"

    monkeypatch.setattr(aarch64_setup.subprocess, "run", lambda *a, **k: _Done())
    with pytest.raises(Aarch64EnvError, match=r"qemu 7\.2\.13.*bookworm-backports"):
        aarch64_setup.find_qemu()
    _Done.stdout = "qemu-aarch64 version 10.0.2 (Debian 1:10.0.2+ds-2+deb13u1~bpo12+1)\n"
    assert aarch64_setup.find_qemu()[1] == (10, 0, 2)


def test_missing_binfmt_handler_is_one_line(monkeypatch, tmp_path):
    monkeypatch.setattr(aarch64_setup, "BINFMT_DIR", tmp_path / "binfmt_misc")  # no handler, not mounted
    monkeypatch.setattr(aarch64_setup.os, "geteuid", lambda: 1000)
    with pytest.raises(Aarch64EnvError, match="update-binfmts --enable qemu-aarch64") as e:
        aarch64_setup.ensure_binfmt(log=lambda line: None)
    assert "\n" not in str(e.value)


def test_binfmt_handler_is_found_by_its_elf_magic(monkeypatch, tmp_path):
    d = tmp_path / "binfmt_misc"
    d.mkdir()
    (d / "register").write_text("")
    (d / "status").write_text("enabled\n")
    (d / "qemu-arm").write_text("enabled\ninterpreter /usr/bin/qemu-arm\n"
                                "magic 7f454c4601010100000000000000000002002800\n")
    monkeypatch.setattr(aarch64_setup, "BINFMT_DIR", d)
    assert aarch64_setup.aarch64_binfmt() is None
    (d / "arm64").write_text(f"enabled\ninterpreter /usr/bin/qemu-aarch64\nflags: POF\noffset 0\n"
                             f"magic {aarch64_setup.AARCH64_MAGIC}\n")
    assert aarch64_setup.aarch64_binfmt() == "arm64"


def test_verify_on_aarch64_without_the_environment_says_how_to_build_it(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("EDGEML_AARCH64_HOME", str(tmp_path / "none"))
    monkeypatch.setattr(aarch64_setup, "find_qemu", lambda: ("/usr/bin/qemu-aarch64-static", (10, 0, 2)))
    assert main(["verify", str(tmp_path / "x.pte"), "--on", "aarch64"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "edgeml setup-aarch64" in err[0] and str(tmp_path / "none") in err[0]


def test_pip_fetches_only_aarch64_cp311_wheels(tmp_path):
    cmd = aarch64_setup.pip_target_command(tmp_path, ["torch==2.13.0"], no_deps=True)
    assert cmd[:4] == [sys.executable, "-m", "pip", "install"]
    assert "--only-binary=:all:" in cmd and "--no-deps" in cmd and cmd[-1] == "torch==2.13.0"
    platforms = [cmd[i + 1] for i, a in enumerate(cmd) if a == "--platform"]
    assert "manylinux_2_28_aarch64" in platforms and all(p.endswith("aarch64") for p in platforms)
    assert cmd[cmd.index("--abi") + 1] == "cp311" and cmd[cmd.index("--target") + 1] == str(tmp_path)


def test_host_pins_drop_local_version_tags():
    pins = aarch64_setup.host_pins()
    assert set(pins) == {"torch", "executorch", "numpy", "onnxruntime"}
    assert all("+" not in v for v in pins.values())


def test_emulated_python_gets_a_clean_environment(tmp_path):
    env = Aarch64Env(tmp_path, "/usr/bin/qemu-aarch64-static")
    cmd = env.command("max,sme=off", ["runner.py", "--probe"])
    assert cmd[:5] == ["/usr/bin/qemu-aarch64-static", "-L", str(tmp_path / "rootfs"), "-cpu", "max,sme=off"]
    assert cmd[5] == str(tmp_path / "rootfs/usr/bin/python3.11") and cmd[-2:] == ["runner.py", "--probe"]
    environ = env.environ("max")
    assert environ["PYTHONPATH"] == str(tmp_path / "site-packages")
    assert "LD_LIBRARY_PATH" not in environ and "LD_PRELOAD" not in environ


# ------------------------------------------------------------------------------------ CLI shape

def test_cli_takes_repeated_cpu_profiles_with_commas_inside():
    args = build_parser().parse_args(["verify", "m.pte", "--on", "aarch64", "--cpu", "max,sme=off",
                                      "--cpu", "dotprod"])
    assert args.on == "aarch64" and args.cpu == ["max,sme=off", "dotprod"]
    assert [resolve_cpu(c) for c in args.cpu] == ["max,sme=off", "cortex-a76"]
    assert build_parser().parse_args(["verify", "m.pte"]).on == "host"
    assert DEFAULT_CPUS == ("cortex-a76", "max,sme=off")


def test_cpu_without_on_aarch64_is_a_usage_error(tmp_path, capsys):
    assert main(["verify", str(tmp_path / "m.pte"), "--cpu", "max"]) == 2
    assert "--on aarch64" in capsys.readouterr().err


def test_setup_aarch64_is_a_subcommand():
    args = build_parser().parse_args(["setup-aarch64", "--home", "/x", "--force"])
    assert args.home == Path("/x") and args.force and args.func.__name__ == "cmd_setup_aarch64"


# ----------------------------------------------------------- the remote runner's file contract

def test_remote_runner_contract_on_the_host_python(tiny_pte, tmp_path):
    path, model = tiny_pte
    calls = _calls(3)
    np.savez(tmp_path / "in.npz", **{f"call{i:05d}_in0": c[0] for i, c in enumerate(calls)})
    import hashlib

    proc = subprocess.run([sys.executable, str(REMOTE_RUNNER), "--artifact", str(path), "--format", "pte",
                           "--sha256", hashlib.sha256(path.read_bytes()).hexdigest(),
                           "--inputs", str(tmp_path / "in.npz"), "--outputs", str(tmp_path / "out.npz"),
                           "--info", str(tmp_path / "info.json")], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert [ln for ln in proc.stdout.splitlines() if ln.startswith("edgeml-progress")] == [
        "edgeml-progress 0 1 3", "edgeml-progress 0 2 3", "edgeml-progress 0 3 3"]
    with np.load(tmp_path / "out.npz") as z:
        assert sorted(z.files) == [f"call{i:05d}_out{k}" for i in range(3) for k in range(2)]
        for i, (x,) in enumerate(calls):
            logits, features = model(torch.from_numpy(x))
            np.testing.assert_allclose(z[f"call{i:05d}_out0"], logits.detach().numpy(), atol=1e-5)
            np.testing.assert_allclose(z[f"call{i:05d}_out1"], features.detach().numpy(), atol=1e-5)
    info = json.loads((tmp_path / "info.json").read_text())
    assert info["calls"] == 3 and info["runtime"].startswith("ExecuTorch") and info["cpu"]["machine"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.npz", "info.json", "out.npz"]  # no temp files


def test_remote_runner_refuses_other_bytes(tiny_pte, tmp_path):
    path, _ = tiny_pte
    np.savez(tmp_path / "in.npz", call00000_in0=_calls(1)[0][0])
    proc = subprocess.run([sys.executable, str(REMOTE_RUNNER), "--artifact", str(path), "--format", "pte",
                           "--sha256", "0" * 64, "--inputs", str(tmp_path / "in.npz"),
                           "--outputs", str(tmp_path / "out.npz"), "--info", str(tmp_path / "info.json")],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 2 and not (tmp_path / "out.npz").exists()
    assert proc.stderr.strip().splitlines()[-1].startswith("edgeml-remote-error: job 0: ValueError:")


def test_remote_runner_runs_onnx(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Mul", ["r", "two"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor("two", TensorProto.FLOAT, [1], [2.0])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, tmp_path / "m.onnx")
    x = np.array([[-1.0, 0.5, 2.0, -3.0]], dtype=np.float32)
    outs, info = run_calls(_HostPython(tmp_path, sys.executable), tmp_path / "m.onnx", "onnx", [[x]], "max")
    np.testing.assert_array_equal(outs[0][0], np.maximum(x, 0) * 2)
    assert info["runtime"].startswith("ONNX Runtime")


def test_run_calls_plumbing_and_progress(tiny_pte, tmp_path):
    path, model = tiny_pte
    calls, ticks = _calls(2), []
    outs, info = run_calls(_HostPython(tmp_path, sys.executable), path, "pte", calls, "dotprod",
                           on_call=lambda: ticks.append(1))
    assert len(ticks) == 2 and len(outs) == 2 and [o.shape for o in outs[1]] == [(2, 5), (2, 4, 8, 8)]
    np.testing.assert_allclose(outs[1][0], model(torch.from_numpy(calls[1][0]))[0].detach().numpy(), atol=1e-5)
    with pytest.raises(ArtifactError, match=r"tiny\.pte on aarch64 \(cortex-a76\): ValueError"):
        run_calls(_HostPython(tmp_path, sys.executable), path, "pte", calls, "dotprod", sha256="0" * 64)


def test_one_failing_job_does_not_stop_the_others(tiny_pte, tmp_path):
    from edgeml.aarch64.run import Job, run_jobs

    path, model = tiny_pte
    calls = _calls(1)
    jobs = [Job(path, "pte", calls), Job(path, "pte", calls, sha256="0" * 64), Job(path, "pte", calls)]
    done: list[int] = []
    results = run_jobs(_HostPython(tmp_path, sys.executable), jobs, "max", on_call=done.append)
    assert done == [0, 2]
    assert results[1].outputs is None and results[1].error.startswith("ValueError") and not results[1].crashed
    for r in (results[0], results[2]):
        assert r.error is None and r.info["calls"] == 1
        np.testing.assert_allclose(r.outputs[0][0], model(torch.from_numpy(calls[0][0]))[0].detach().numpy(),
                                   atol=1e-5)


def _parity(sqnr: float, max_abs: float, top1: float = 1.0) -> dict:
    out = {"sqnr_db": sqnr, "cosine": 1.0, "max_abs_error": max_abs, "top1_agreement": top1,
           "image_sqnr_db": {"min": sqnr, "p5": sqnr, "median": sqnr}}
    return {"images": ["a.jpg", "b.jpg"], "outputs": {"logits": out}, "worst_sqnr_db": sqnr}


def test_report_names_each_profile_and_fails_below_the_threshold():
    from edgeml.aarch64.run import Aarch64Report, format_aarch64_report

    profiles = {"cortex-a76": {"vs_reference": _parity(31.0, 0.1), "vs_host": _parity(float("inf"), 0.0),
                               "features": ["asimd", "asimddp"], "info": {"runtime": "ExecuTorch 1.5.1"}},
                "max,sme=off": {"vs_reference": _parity(24.0, 0.2, 0.5), "vs_host": _parity(130.0, 0.0),
                                "features": ["asimd", "asimddp", "i8mm"], "info": {}}}
    report = Aarch64Report(Path("m.pte"), 25.0, "eager", "ExecuTorch (xnnpack) on the host", _parity(31.0, 0.1),
                           profiles, qemu="qemu-user 10.0.2")
    text = format_aarch64_report(report)
    assert not report.passed and text.splitlines()[-1].startswith("  FAIL: worst SQNR vs reference on aarch64 24.0")
    a76 = next(ln for ln in text.splitlines() if ln.strip().startswith("cortex-a76"))
    assert "identical [identical]" in a76 and a76.endswith("asimd asimddp")
    i8mm = next(ln for ln in text.splitlines() if ln.strip().startswith("max,sme=off"))
    assert "<1e-06" in i8mm and "50%" in i8mm  # 130 dB apart is not "0 apart"
    assert report.to_dict()["passed"] is False


# ------------------------------------------------------------------- on the emulated ARM CPU

def _missing_env() -> str | None:
    """Why the emulated environment cannot run here, or None when it can."""
    try:
        aarch64_setup.find_env()
    except Aarch64EnvError as e:
        return f"no emulated aarch64 environment: {e}"
    return None


@pytest.mark.skipif(_missing_env() is not None, reason=str(_missing_env()))
@pytest.mark.slow(reason="one emulated aarch64 process: 3 - 15 minutes to import torch and ExecuTorch under qemu")
def test_verify_on_emulated_cortex_a76(scan_artifacts):
    """The tiny selective-scan classifier (XNNPACK plus portable ops) on ARM dot-product kernels:
    within fp32 rounding of the host run, and passing verify's threshold."""
    from edgeml.aarch64.run import format_aarch64_report, verify_on_aarch64

    report = verify_on_aarch64(scan_artifacts.good, cpus=["dotprod"], images=scan_artifacts.images)
    assert report.passed, format_aarch64_report(report)
    profile = report.profiles["cortex-a76"]
    assert profile["info"]["cpu"]["machine"] == "aarch64"
    assert "asimddp" in profile["features"] and "sve" not in profile["features"]
    assert len(profile["vs_host"]["images"]) == 12
    assert profile["vs_host"]["worst_sqnr_db"] > 100  # fp32 rounding apart, at most
    assert profile["vs_reference"]["outputs"]["logits"]["top1_agreement"] == 1.0

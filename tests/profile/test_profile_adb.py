"""edgeml profile --device adb against a fake adb that answers as adb, the shell and the benchmark apps do.

No phone is attached to these machines: every figure here is the fake's, and the tests check that
edgeml asks the phone the right things, reads its answers key for key, and fails with one clear
line when adb, the phone or the app is not as it should be.
"""
from __future__ import annotations

import json
import shutil
import time

import pytest
from profile_helpers import install_fake_adb, no_adb_on_path, write_artifact

from edgeml.cli import main
from edgeml.errors import DeviceError, UsageError
from edgeml.profile.adb import parse_benchmark_results, parse_runner_output, profile_on_device
from edgeml.profile.compare import interleaved_order

SERIAL = "R5CT12345"


@pytest.fixture
def artifacts(tmp_path):
    """Two artifacts in edgeml's naming (the bytes only need to match their manifests: the host never runs them)."""
    folder = tmp_path / "artifacts"
    fp32 = write_artifact(folder, "tinynet_xnnpack_fp32.pte", b"PTE-fp32" * 100, model="tinynet")
    int8 = write_artifact(folder, "tinynet_xnnpack_int8.pte", b"PTE-int8" * 50, model="tinynet", quant="int8")
    return fp32, int8


@pytest.fixture
def phone(tmp_path, monkeypatch):
    return install_fake_adb(tmp_path, monkeypatch,
                            latency_ms={"tinynet_xnnpack_fp32": 20.0, "tinynet_xnnpack_int8": 8.0})


def _error_line(capsys, code: int) -> str:
    captured = capsys.readouterr()
    assert code != 0
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in captured.err, captured.err
    return lines[0]


def test_minibench_run_end_to_end(phone, artifacts, tmp_path, capsys):
    fp32, _ = artifacts
    out_json = tmp_path / "report.json"
    assert main(["profile", str(fp32), "--device", "adb", "--runs", "20", "--warmup", "3",
                 "--json", str(out_json)]) == 0
    printed = capsys.readouterr().out
    assert "Pixel 8" in printed and "Tensor G3" in printed and "arm64-v8a" in printed and "Android 14" in printed
    assert "trimmed mean 20.00" in printed and "p50 n/a" in printed

    # What the phone was asked, in order: its identity, the app, the push, the launch, the results.
    shell = phone.shell_calls()
    assert shell[0] == "getprop"
    assert shell[1] == "pm path org.pytorch.minibench"
    pushes = [c for c in phone.calls() if "push" in c]
    assert [c[-1] for c in pushes] == ["/data/local/tmp/edgeml/tinynet_xnnpack_fp32/tinynet_xnnpack_fp32.pte",
                                       "/data/local/tmp/edgeml/tinynet_xnnpack_fp32/tinynet_xnnpack_fp32.json"]
    assert all(c[:2] == ["-s", SERIAL] for c in phone.calls() if c != ["devices"])
    assert ("am start -W -S -n org.pytorch.minibench/.BenchmarkActivity --es model_dir "
            "/data/local/tmp/edgeml/tinynet_xnnpack_fp32 --ei num_iter 20 --ei num_warm_up_iter 3") in shell
    assert "run-as org.pytorch.minibench cat files/benchmark_results.json" in shell
    assert phone.file(SERIAL, "/data/local/tmp/edgeml/tinynet_xnnpack_fp32/tinynet_xnnpack_fp32.pte"
                      ).read_bytes() == fp32.read_bytes()

    report = json.loads(out_json.read_text())
    assert report["device"]["kind"] == "adb"
    assert {k: report["device"][k] for k in ("serial", "model", "soc", "abi", "android")} == {
        "serial": SERIAL, "model": "Pixel 8", "soc": "Tensor G3", "abi": "arm64-v8a", "android": "14"}
    # The app's figures, key for key: avg 1.05 x 20, trimmed mean 20, load 41, PSS 21.5.
    assert report["stats"]["mean"] == pytest.approx(21.0)
    assert report["stats"]["trimmed_mean"] == pytest.approx(20.0)
    assert report["load_ms"] == pytest.approx(41.0) and report["ram_pss_mb"] == pytest.approx(21.5)
    assert report["runs"] == 20 and report["warmup"] == 3
    # What the app cannot report is None, and says why.
    assert report["stats"]["p50"] is None and report["latency_ms"] == [] and report["per_op"] == []
    assert "only the mean and the trimmed mean" in report["unavailable"]["stats.p50"]
    assert "ETDump" in report["unavailable"]["per_op"]
    assert report["peak_rss_mb"] is None and "peak_rss_mb" in report["unavailable"]
    # The app's own JSON is kept, and edgeml's benchmark view names the model as the app did.
    assert report["raw"][0]["metrics"][0]["benchmarkModel"] == {"name": "tinynet", "backend": "xnnpack",
                                                                 "quantization": "fp32"}
    metrics = {m["metric"]: m for m in report["benchmark_metrics"]}
    assert metrics["trimmean_inference_latency(ms)"]["actualValue"] == pytest.approx(20.0)
    assert metrics["avg_inference_latency(ms)"]["deviceInfo"]["arch"] == "Pixel 8"


def test_renamed_artifact_is_pushed_under_the_benchmark_name(phone, artifacts, tmp_path):
    fp32, _ = artifacts
    odd = tmp_path / "my model (final).pte"
    shutil.copy(fp32, odd)
    shutil.copy(fp32.with_suffix(".json"), odd.with_suffix(".json"))
    [report] = profile_on_device([odd], runs=5, warmup=1)
    assert phone.state()["last_launch"]["pte"] == "tinynet_xnnpack_fp32"
    assert report.artifact == odd.name and report.stats["trimmed_mean"] == pytest.approx(20.0)


def test_edgeml_demo_app_with_threads(phone, artifacts, capsys):
    phone.configure(packages=["org.edgeml.demo"])
    fp32, _ = artifacts
    assert main(["profile", str(fp32), "--device", f"adb:{SERIAL}", "--app", "edgeml-demo", "--threads", "2",
                 "--runs", "7", "--warmup", "0"]) == 0
    shell = phone.shell_calls()
    assert ("am start -W -S -n org.edgeml.demo/.BenchmarkActivity --es model_dir "
            "/data/local/tmp/edgeml/tinynet_xnnpack_fp32 --ei num_iter 7 --ei num_warm_up_iter 0 "
            "--ei num_threads 2") in shell
    assert "run-as org.edgeml.demo cat files/benchmark_results.json" in shell
    assert "bundled sample photo" in capsys.readouterr().out


def test_minibench_takes_no_thread_count(phone, artifacts, capsys):
    line = _error_line(capsys, main(["profile", str(artifacts[0]), "--device", "adb", "--threads", "2"]))
    assert "org.pytorch.minibench has no thread option" in line
    assert phone.calls() == []  # refused before anything touched the phone


def test_executor_runner_with_per_run_times(phone, artifacts, tmp_path, capsys):
    runner = tmp_path / "executor_runner"
    runner.write_bytes(b"\x7fELF fake arm64 binary")
    out_json = tmp_path / "r.json"
    assert main(["profile", str(artifacts[0]), "--device", "adb", "--runner", str(runner), "--runs", "10",
                 "--warmup", "2", "--threads", "4", "--json", str(out_json)]) == 0
    shell = phone.shell_calls()
    assert "chmod 755 /data/local/tmp/edgeml/executor_runner" in shell
    assert ("/data/local/tmp/edgeml/executor_runner --model_path /data/local/tmp/edgeml/tinynet_xnnpack_fp32/"
            "tinynet_xnnpack_fp32.pte --num_executions 12 --cpu_threads 4") in shell
    report = json.loads(out_json.read_text())
    # The fake runs 2 slow warm-ups (60 ms), then alternates 22 / 18 ms; the warm-ups are dropped.
    assert len(report["latency_ms"]) == 10 and max(report["latency_ms"]) == pytest.approx(22.0)
    assert report["stats"]["mean"] == pytest.approx(20.0) and report["stats"]["min"] == pytest.approx(18.0)
    assert report["stats"]["p50"] == pytest.approx(20.0)
    assert report["load_ms"] == pytest.approx(31.25)
    assert report["ram_pss_mb"] is None and "does not report memory" in report["unavailable"]["ram_pss_mb"]
    assert "Model executed successfully 12 time(s)" in report["raw"][0]["log"][-1]
    assert "p50 20.00" in capsys.readouterr().out


def test_executor_runner_logging_to_logcat(phone, artifacts, tmp_path):
    phone.configure(runner="logcat")
    runner = tmp_path / "xnn_executor_runner"
    runner.write_bytes(b"fake")
    [report] = profile_on_device([artifacts[0]], runner=runner, runs=4, warmup=2)
    assert len(report.latency_ms) == 4 and report.stats["p50"] == pytest.approx(20.0)
    assert any(c[2:] == ["logcat", "-d", "-T", "1700000000.000"] for c in phone.calls() if "logcat" in c)


def test_executor_runner_printing_only_its_total(phone, artifacts, tmp_path):
    phone.configure(runner="total_only")
    runner = tmp_path / "executor_runner"
    runner.write_bytes(b"fake")
    [report] = profile_on_device([artifacts[0]], runner=runner, runs=8, warmup=2)
    # Total of 2 x 60 + 4 x 22 + 4 x 18 over 10 executions: the warm-up cannot be told apart.
    assert report.stats["mean"] == pytest.approx((120 + 88 + 72) / 10)
    assert report.stats["p50"] is None and report.latency_ms == []
    assert "no 'Iteration i of n' lines" in report.unavailable["stats.p50"]
    assert any("includes the 2 warm-up executions" in n for n in report.notes)


def test_executor_runner_that_crashes(phone, artifacts, tmp_path, capsys):
    phone.configure(runner="crash")
    runner = tmp_path / "executor_runner"
    runner.write_bytes(b"fake")
    line = _error_line(capsys, main(["profile", str(artifacts[0]), "--device", "adb", "--runner", str(runner)]))
    assert "executor_runner failed on the phone (exit 139): Segmentation fault" in line


def test_repeated_launches_with_cooldown(phone, artifacts):
    t0 = time.monotonic()
    [report] = profile_on_device([artifacts[0]], runs=5, warmup=1, repeat=3, cooldown_s=0.3)
    assert time.monotonic() - t0 >= 0.6  # two pauses between three launches
    assert phone.state()["launches"] == 3 and len(report.raw) == 3
    # The fake phone slows by 1% a launch: trimmed means 20, 20.2, 20.4.
    assert report.stats["trimmed_mean"] == pytest.approx(20.2)
    assert any("3 launch(es)" in n and "0.3 s pause" in n for n in report.notes)


def test_compare_on_the_phone_interleaves_launches(phone, artifacts, tmp_path, capsys):
    fp32, int8 = artifacts
    out_json = tmp_path / "cmp.json"
    assert main(["profile", str(fp32), str(int8), "--compare", "--device", "adb", "--repeat", "2", "--runs", "5",
                 "--json", str(out_json)]) == 0
    launched = [c.split("model_dir ")[1].split()[0].rsplit("/", 1)[1] for c in phone.shell_calls()
                if c.startswith("am start")]
    stems = ["tinynet_xnnpack_fp32", "tinynet_xnnpack_int8"]
    assert launched == [stems[i] for r in range(2) for i in interleaved_order(r, 2)]
    assert sorted(launched[:2]) == sorted(launched[2:]) == sorted(stems)  # each once per round
    data = json.loads(out_json.read_text())
    # Each launch is 1% slower than the one before: one artifact launched 1st and 4th, the other
    # 2nd and 3rd, so both means are their base times x 1.015 (fp32 20.3, int8 8.12).
    assert data["ratios"][0]["trimmed_mean"] == pytest.approx(1.0)
    assert data["ratios"][1]["trimmed_mean"] == pytest.approx(8.12 / 20.3)
    assert data["ratios"][1]["p50"] is None
    printed = capsys.readouterr().out
    assert "0.400" in printed and "tinynet_xnnpack_int8.pte" in printed


def test_results_appear_after_a_while(phone, artifacts):
    phone.configure(results="delayed:3")
    [report] = profile_on_device([artifacts[0]], runs=5, warmup=1, timeout_s=20)
    assert report.stats["trimmed_mean"] == pytest.approx(20.0)
    assert phone.state()["reads"] == 3


# --- what goes wrong, one clear line each -------------------------------------------------------


def test_no_adb_on_path(tmp_path, monkeypatch, artifacts, capsys):
    no_adb_on_path(tmp_path, monkeypatch)
    line = _error_line(capsys, main(["profile", str(artifacts[0]), "--device", "adb"]))
    assert "adb is not on PATH" in line and "platform-tools" in line


def test_no_device_attached(phone, artifacts, capsys):
    phone.configure(devices=[])
    line = _error_line(capsys, main(["profile", str(artifacts[0]), "--device", "adb"]))
    assert "no Android device attached" in line


def test_two_devices_and_no_serial(phone, artifacts, capsys):
    phone.configure(devices=[[SERIAL, "device"], ["emulator-5554", "device"]],
                    props={SERIAL: {}, "emulator-5554": {"ro.product.model": "sdk_gphone64_x86_64",
                                                         "ro.product.cpu.abi": "x86_64"}})
    line = _error_line(capsys, main(["profile", str(artifacts[0]), "--device", "adb"]))
    assert f"2 devices attached ({SERIAL}, emulator-5554)" in line and "--device adb:SERIAL" in line
    # Naming one works, and every command goes to that one.
    assert main(["profile", str(artifacts[0]), "--device", "adb:emulator-5554", "--runs", "3"]) == 0
    assert "sdk_gphone64_x86_64 (x86_64" in capsys.readouterr().out
    assert all(c[:2] == ["-s", "emulator-5554"] for c in phone.calls()[-8:])


def test_serial_not_attached_or_not_authorized(phone, artifacts, capsys):
    line = _error_line(capsys, main(["profile", str(artifacts[0]), "--device", "adb:XYZ"]))
    assert f"no device XYZ attached (adb devices lists: {SERIAL})" in line
    phone.configure(devices=[[SERIAL, "unauthorized"]])
    line = _error_line(capsys, main(["profile", str(artifacts[0]), "--device", "adb"]))
    assert "is unauthorized" in line and "Allow USB debugging" in line


def test_app_not_installed(phone, artifacts, capsys):
    phone.configure(packages=[])
    line = _error_line(capsys, main(["profile", str(artifacts[0]), "--device", "adb"]))
    assert "org.pytorch.minibench is not installed" in line and "extension/benchmark/android/benchmark" in line


def test_app_not_debuggable(phone, artifacts, capsys):
    phone.configure(debuggable=False)
    line = _error_line(capsys, main(["profile", str(artifacts[0]), "--device", "adb"]))
    assert "package not debuggable" in line and "debug build" in line


def test_results_file_missing(phone, artifacts, capsys):
    phone.configure(results="missing")
    t0 = time.monotonic()
    line = _error_line(capsys, main(["profile", str(artifacts[0]), "--device", "adb", "--timeout", "1"]))
    assert time.monotonic() - t0 < 10
    assert "wrote no files/benchmark_results.json within 1 s" in line and "adb logcat" in line


def test_malformed_results(phone, artifacts, capsys):
    phone.configure(results="malformed")
    line = _error_line(capsys, main(["profile", str(artifacts[0]), "--device", "adb", "--timeout", "5"]))
    assert "wrote a malformed files/benchmark_results.json: not JSON" in line


def test_program_the_app_cannot_load(phone, artifacts, capsys):
    phone.configure(results="load_error")
    line = _error_line(capsys, main(["profile", str(artifacts[0]), "--device", "adb"]))
    assert "could not load the program (ExecuTorch error code 0x20)" in line


def test_options_that_do_not_fit(phone, artifacts, tmp_path, capsys):
    onnx = write_artifact(tmp_path, "tinynet_ort_fp32.onnx", b"onnx", model="tinynet")
    assert "phones run ExecuTorch .pte" in _error_line(capsys, main(["profile", str(onnx), "--device", "adb"]))
    assert "expected host, adb or adb:SERIAL" in _error_line(
        capsys, main(["profile", str(artifacts[0]), "--device", "phone"]))
    assert "phone options; add --device adb" in _error_line(
        capsys, main(["profile", str(artifacts[0]), "--repeat", "3"]))
    assert "choose one way" in _error_line(capsys, main(
        ["profile", str(artifacts[0]), "--device", "adb", "--app", "edgeml-demo", "--runner", str(onnx)]))
    assert "add --compare" in _error_line(capsys, main(["profile", *map(str, artifacts), "--device", "adb"]))
    assert phone.calls() == []


def test_parsers_on_their_own():
    text = json.dumps([{"benchmarkModel": {"name": "m", "backend": "xnnpack", "quantization": "int8"},
                        "metric": "avg_inference_latency(ms)", "actualValue": 5, "targetValue": 0,
                        "deviceInfo": {}}])
    assert parse_benchmark_results(text, "m")["avg_ms"] == 5.0
    with pytest.raises(DeviceError, match="results are for model 'm', not 'other'"):
        parse_benchmark_results(text, "other")
    log = ("I 00:00:00.1 executorch:executor_runner.cpp:1] Model loaded in 12.5 ms.\n"
           "Model executed successfully 3 time(s) in 30.000000 ms.\n")
    assert parse_runner_output(log, 1) == {"executions": 3, "total_ms": 30.0, "avg_ms": 10.0, "samples": None,
                                           "load_ms": 12.5}
    assert parse_runner_output("Segmentation fault", 0) is None
    with pytest.raises(UsageError):
        profile_on_device([], runs=0)

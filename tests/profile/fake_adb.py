"""A fake ``adb`` for the tests: answers as adb, the phone's shell and the benchmark apps do.

The tests copy this file into a folder put first on PATH, named ``adb``. Its state lives in
``$FAKE_ADB_HOME``: ``config.json`` (what the phone is like, written by the test), ``calls.jsonl``
(every command line it was given, for the test to check) and ``fs/<serial>/...`` (the phone's
files: what was pushed, and each app's private ``files/`` folder).

Config keys:
  devices        [[serial, state], ...]                  state: device | unauthorized | offline
  props          {serial: {getprop key: value}}
  packages       installed app packages; debuggable: false makes run-as refuse them
  latency_ms     {model file stem: mean latency the "phone" measures}
  results        ok | missing | malformed | load_error | delayed:N (file appears on the Nth read)
  runner         stderr | logcat | total_only | crash    (how executor_runner reports)

The apps behave as ExecuTorch's minibench does: the first .pte in model_dir, the model named by
the regex (\\w+)_([\\w+]+)_(\\w+) on its file name, metrics written as a JSON list to
files/benchmark_results.json. Each launch's latency grows by 1% per launch (a phone warming up).
"""
import json
import os
import re
import shlex
import shutil
import sys
from pathlib import Path

HOME = Path(os.environ["FAKE_ADB_HOME"])
CONFIG = json.loads((HOME / "config.json").read_text())
STATE = HOME / "state.json"


def load_state() -> dict:
    return json.loads(STATE.read_text()) if STATE.exists() else {"launches": 0, "reads": 0, "logcat": []}


def save_state(state: dict) -> None:
    STATE.write_text(json.dumps(state))


def fs(serial: str, path: str) -> Path:
    return HOME / "fs" / serial / path.lstrip("/")


def app_files(serial: str, package: str) -> Path:
    return fs(serial, f"/data/data/{package}")


def out(text: str = "", err: str = "", code: int = 0):
    sys.stdout.write(text)
    sys.stderr.write(err)
    sys.exit(code)


def main(argv: list[str]) -> None:
    with open(HOME / "calls.jsonl", "a") as f:
        f.write(json.dumps(argv) + "\n")
    devices = CONFIG.get("devices", [])
    serial = None
    if argv[:1] == ["-s"]:
        serial, argv = argv[1], argv[2:]
    if argv[:1] == ["devices"]:
        out("List of devices attached\n" + "".join(f"{s}\t{st}\n" for s, st in devices) + "\n")
    ready = [s for s, st in devices if st == "device"]
    if serial is None:
        if len(ready) != 1:
            out(err="adb: more than one device/emulator\n" if ready else "adb: no devices/emulators found\n",
                code=1)
        serial = ready[0]
    if serial not in ready:
        out(err=f"adb: device '{serial}' not found\n", code=1)
    if argv[0] == "push":
        local, remote = argv[1], argv[2]
        target = fs(serial, remote)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(local, target)
        size = Path(local).stat().st_size
        out(f"{local}: 1 file pushed, 0 skipped. 12.3 MB/s ({size} bytes in 0.001s)\n")
    if argv[0] == "logcat":
        out("".join(line + "\n" for line in load_state()["logcat"]))
    if argv[0] == "shell":
        command = " ".join(argv[1:])
        code = 0
        for part in command.split("&&"):
            code = shell(serial, shlex.split(part))
            if code:
                break
        sys.exit(code)
    out(err=f"fake adb: unknown command {argv}\n", code=1)


def shell(serial: str, words: list[str]) -> int:
    cmd, args = words[0], words[1:]
    packages = CONFIG.get("packages", [])
    if cmd == "getprop":
        props = CONFIG["props"][serial]
        if args:
            print(props.get(args[0], ""))
        else:
            for k, v in sorted(props.items()):
                print(f"[{k}]: [{v}]")
        return 0
    if cmd == "date":
        print("1700000000")
        return 0
    if cmd == "mkdir":
        fs(serial, args[-1]).mkdir(parents=True, exist_ok=True)
        return 0
    if cmd == "rm":
        target = fs(serial, args[-1])
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
        return 0
    if cmd == "chmod":
        fs(serial, args[-1]).chmod(0o755)
        return 0
    if cmd == "pm" and args[0] == "path":
        if args[1] in packages:
            print(f"package:/data/app/~~x/{args[1]}-1/base.apk")
            return 0
        return 1
    if cmd == "run-as":
        package, rest = args[0], args[1:]
        if package not in packages:
            print(f"run-as: unknown package: {package}", file=sys.stderr)
            return 1
        if not CONFIG.get("debuggable", True):
            print(f"run-as: package not debuggable: {package}", file=sys.stderr)
            return 1
        path = app_files(serial, package) / rest[-1]
        if rest[0] == "rm":
            path.unlink(missing_ok=True)
            return 0
        if rest[0] == "cat":
            state = load_state()
            state["reads"] += 1
            save_state(state)
            pending = state.get("pending")
            if pending and state["reads"] >= pending["at_read"]:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(pending["text"])
                state["pending"] = None
                save_state(state)
            if not path.exists():
                print(f"cat: {rest[-1]}: No such file or directory", file=sys.stderr)
                return 1
            sys.stdout.write(path.read_text())
            return 0
    if cmd == "am" and args[0] == "start":
        return am_start(serial, args[1:])
    if cmd.startswith("/data/local/tmp/") and fs(serial, cmd).is_file():
        return executor_runner(serial, cmd, args)
    print(f"/system/bin/sh: {cmd}: not found", file=sys.stderr)
    return 127


def extras(args: list[str]) -> dict:
    found = {}
    for i, a in enumerate(args):
        if a in ("--es", "--ei"):
            key, value = args[i + 1], args[i + 2]
            found[key] = int(value) if a == "--ei" else value
    return found


def am_start(serial: str, args: list[str]) -> int:
    component = args[args.index("-n") + 1]
    package = component.split("/")[0]
    if package not in CONFIG.get("packages", []):
        print(f"Error: Activity class {{{component}}} does not exist.")
        return 0  # am reports this on stdout with status 0
    ex = extras(args)
    state = load_state()
    state["launches"] += 1
    print(f"Starting: Intent {{ cmp={component} (has extras) }}\nStatus: ok\nLaunchState: COLD\n"
          f"Activity: {component}\nTotalTime: 412\nWaitTime: 415\nComplete")
    model_dir = fs(serial, ex["model_dir"])
    pte = sorted(p for p in model_dir.iterdir() if p.suffix == ".pte")[0]
    stem = pte.stem
    m = re.fullmatch(r"(\w+)_([\w+]+)_(\w+)", stem)
    model = ({"name": m.group(1), "backend": m.group(2), "quantization": m.group(3)} if m
             else {"name": stem, "backend": "", "quantization": ""})
    device = {"device": CONFIG["props"][serial].get("ro.product.brand", ""),
              "arch": CONFIG["props"][serial].get("ro.product.model", ""),
              "os": "Android " + CONFIG["props"][serial].get("ro.build.version.release", ""),
              "totalMem": 0, "availMem": 0}
    base = CONFIG["latency_ms"][stem] * (1 + 0.01 * (state["launches"] - 1))
    mode = CONFIG.get("results", "ok")

    def metric(name, value):
        return {"benchmarkModel": model, "metric": name, "actualValue": value, "targetValue": 0.0,
                "deviceInfo": device}

    if mode == "load_error":
        results = [metric("model_load_time(ms)", 3.0), metric("load_status", 32.0)]
    else:
        results = [metric("avg_inference_latency(ms)", base * 1.05), metric("trimmean_inference_latency(ms)", base),
                   metric("model_load_time(ms)", 40.0 + state["launches"]), metric("load_status", 0.0),
                   metric("ram_pss_usage(mb)", 21.5)]
    text = json.dumps(results)
    if mode == "malformed":
        text = text[: len(text) // 2]
    state["last_launch"] = {"package": package, "extras": ex, "pte": stem}
    target = app_files(serial, package) / "files" / "benchmark_results.json"
    if mode.startswith("delayed:"):
        state["pending"] = {"text": text, "at_read": state["reads"] + int(mode.split(":")[1])}
    elif mode != "missing":
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    save_state(state)
    return 0


def executor_runner(serial: str, runner: str, args: list[str]) -> int:
    opts = {args[i].lstrip("-"): args[i + 1] for i in range(0, len(args), 2)}
    mode = CONFIG.get("runner", "stderr")
    if mode == "crash":
        print("Segmentation fault", file=sys.stderr)
        return 139
    model = Path(opts["model_path"])
    if not fs(serial, str(model)).is_file():
        print(f"E 00:00:00.000100 executorch:executor_runner.cpp:312] Failed to parse model file {model}",
              file=sys.stderr)
        return 1
    n = int(opts["num_executions"])
    base = CONFIG["latency_ms"][model.stem]
    lines = ["I 00:00:00.000200 executorch:executor_runner.cpp:120] Resetting threadpool with num threads = "
             + opts.get("cpu_threads", "4"),
             "I 00:00:00.020000 executorch:executor_runner.cpp:410] Model loaded in 31.250000 ms."]
    # Warm-up runs are slow (3x), the rest alternate around the mean.
    times = [base * 3 if i < 2 else base * (0.9 if i % 2 else 1.1) for i in range(n)]
    if mode != "total_only":
        lines += [f"I 00:00:00.1{i:05d} executorch:executor_runner.cpp:560] Iteration {i + 1} of {n}: {t:f} ms"
                  for i, t in enumerate(times)]
    lines.append(f"I 00:00:01.000000 executorch:executor_runner.cpp:570] Model executed successfully {n} time(s) "
                 f"in {sum(times):f} ms.")
    print("OutputX 0: tensor(sizes=[1, 10], [0.1, 0.2, ...])")
    if mode == "logcat":
        state = load_state()
        state["logcat"] += [f"11-25 07:00:00.000  4242  4242 I ExecuTorch: {line.split('] ', 1)[1]}"
                            for line in lines]
        save_state(state)
    else:
        print("\n".join(lines), file=sys.stderr)
    return 0


if __name__ == "__main__":
    main(sys.argv[1:])

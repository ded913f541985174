"""Build the emulated aarch64 Python that ``edgeml verify --on aarch64`` runs artifacts in.

Everything comes from the two registries edgeml already uses: Debian (the arm64 root file
system, made by ``mmdebstrap --arch=arm64``: Debian bookworm's Python 3.11 and its C library)
and PyPI (the aarch64 wheels of the *same* torch, ExecuTorch, numpy and ONNX Runtime versions
as the host, so the program is read by the same runtime code compiled for ARM). The wheels are
fetched and unpacked by the host's own pip (``pip install --target --platform
manylinux_2_X_aarch64``), natively and fast; only the checks at the end run under emulation.

The result is a folder (``default_home()``)::

    rootfs/          Debian arm64: /usr/bin/python3.11, its libc and stdlib   (~250 MB)
    site-packages/   torch, executorch, onnxruntime, numpy for aarch64      (~5.1 GB)
    env.json         what was built, with which versions, how big, how long

Most of the size is the CUDA libraries that PyPI's aarch64 torch wheel requires (it is a CUDA
build and does not import without them); they are never loaded for work.

Host requirements, checked first and reported on one line with the package to install:
``qemu-aarch64-static`` >= 8.2 (Debian ``qemu-user-static``; bookworm's own 7.2 crashes in
cpuinfo when torch is imported and computes SME int8 wrong, so on bookworm take it from
bookworm-backports), ``mmdebstrap`` and a binfmt_misc handler for aarch64 ELF files (mmdebstrap
needs it to configure the arm64 packages; when running as root, edgeml registers the handler
qemu ships in /usr/lib/binfmt.d itself). edgeml never installs host packages: it prints the
apt-get command to run.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from edgeml.aarch64 import Aarch64EnvError, default_home

SUITE = "bookworm"  # Debian 12: Python 3.11, matching the cp311 wheels below
MIRROR = "http://deb.debian.org/debian"
PYTHON = ("3.11", "cp311")
DEBIAN_PACKAGES = ("python3", "ca-certificates")
# Pinned to the host's versions (the exported programs depend on the exact torch/ExecuTorch pair).
PINNED = ("torch", "executorch", "numpy", "onnxruntime")
# executorch is installed without its requirements (coremltools, one of them, has no aarch64
# wheel); these are the ones ``executorch.runtime`` imports.
EXECUTORCH_RUNTIME_DEPS = ("flatbuffers", "ruamel.yaml", "tabulate", "packaging", "pyyaml", "typing-extensions")
MANYLINUX = [f"manylinux_2_{v}_aarch64" for v in range(36, 16, -1)] + ["manylinux2014_aarch64"]
MIN_QEMU = (8, 2)
APPROX_BYTES = 5_400_000_000  # measured: 0.26 GB Debian, 5.1 GB wheels and their byte code
BINFMT_DIR = Path("/proc/sys/fs/binfmt_misc")
# ELF header of a little-endian 64-bit aarch64 executable, as binfmt_misc shows the magic.
AARCH64_MAGIC = "7f454c460201010000000000000000000200b700"
COMPLETE = ".edgeml-complete"


@dataclass
class Aarch64Env:
    """A built environment: run ``command(cpu, argv)`` with ``environ(cpu)``."""

    home: Path
    qemu: str

    @property
    def rootfs(self) -> Path:
        return self.home / "rootfs"

    @property
    def site_packages(self) -> Path:
        return self.home / "site-packages"

    @property
    def python(self) -> Path:
        return self.rootfs / "usr" / "bin" / f"python{PYTHON[0]}"

    def command(self, cpu: str, argv: Sequence[str]) -> list[str]:
        """``argv`` (a script and its arguments) run by the aarch64 Python on CPU model ``cpu``.

        ``-L rootfs`` makes qemu look up the dynamic loader and every absolute path in the root
        file system first and in the host's second, so no chroot (and no root) is needed and
        host paths (the artifact, the temporary .npz files, /proc, /sys) stay visible."""
        return [self.qemu, "-L", str(self.rootfs), "-cpu", cpu, str(self.python), "-s", *argv]

    def environ(self, cpu: str) -> dict[str, str]:
        """A clean environment: nothing of the host's Python, library path or locale leaks in."""
        return {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": "/tmp", "PYTHONNOUSERSITE": "1",
                "PYTHONPATH": str(self.site_packages), "QEMU_CPU": cpu}


# ---------------------------------------------------------------------------------- host tools

def host_codename() -> str:
    try:
        text = Path("/etc/os-release").read_text()
    except OSError:
        return ""
    m = re.search(r"^VERSION_CODENAME=\"?([a-z]+)", text, re.M)
    return m.group(1) if m else ""


def _qemu_package_hint() -> str:
    if host_codename() == "bookworm":
        return ("qemu-user-static from bookworm-backports (add `bookworm-backports` to the apt sources, then "
                "`apt-get install -t bookworm-backports qemu-user-static`; bookworm's own qemu 7.2 is too old)")
    return "qemu-user-static (`apt-get install qemu-user-static`)"


def find_qemu() -> tuple[str, tuple[int, ...]]:
    """The qemu-user aarch64 emulator and its version; Aarch64EnvError if missing or too old."""
    path = shutil.which("qemu-aarch64-static") or shutil.which("qemu-aarch64")
    if path is None:
        raise Aarch64EnvError(f"qemu-aarch64-static not found: install {_qemu_package_hint()}")
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError) as e:
        raise Aarch64EnvError(f"{path} does not run ({e}): reinstall {_qemu_package_hint()}") from None
    m = re.search(r"version (\d+)\.(\d+)(?:\.(\d+))?", out)
    found = tuple(int(g) for g in m.groups() if g is not None) if m else (0,)
    if found < MIN_QEMU:
        shown = ".".join(map(str, found)) if m else "of unknown version"
        raise Aarch64EnvError(f"{path} is qemu {shown}; ARM kernels need qemu >= "
                              f"{'.'.join(map(str, MIN_QEMU))} (older ones crash in cpuinfo): install "
                              f"{_qemu_package_hint()}")
    return path, found


def aarch64_binfmt() -> str | None:
    """The name of an enabled binfmt_misc handler for aarch64 ELF files, or None."""
    try:
        entries = list(BINFMT_DIR.iterdir())
    except OSError:
        return None
    for entry in entries:
        if entry.name in ("register", "status"):
            continue
        try:
            text = entry.read_text()
        except OSError:
            continue
        if text.startswith("enabled") and f"magic {AARCH64_MAGIC}" in text:
            return entry.name
    return None


def ensure_binfmt(log: Callable[[str], None] = print) -> str:
    """An aarch64 binfmt handler (mmdebstrap runs arm64 maintainer scripts through it): found,
    or registered from qemu's /usr/lib/binfmt.d file when running as root."""
    name = aarch64_binfmt()
    if name:
        return name
    conf = Path("/usr/lib/binfmt.d/qemu-aarch64.conf")
    if os.geteuid() == 0 and conf.is_file():
        try:
            if not (BINFMT_DIR / "register").exists():
                subprocess.run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(BINFMT_DIR)], check=True,
                               capture_output=True)
            line = next(ln for ln in conf.read_text().splitlines() if ln.startswith(":"))
            (BINFMT_DIR / "register").write_text(line)
            log(f"  registered the aarch64 binfmt_misc handler from {conf}")
        except (OSError, StopIteration, subprocess.CalledProcessError):
            pass
        name = aarch64_binfmt()
        if name:
            return name
    raise Aarch64EnvError(
        "no binfmt_misc handler for aarch64 programs (mmdebstrap needs one to set up arm64 packages): "
        "install binfmt-support and run `update-binfmts --enable qemu-aarch64` as root "
        "(or `systemctl restart systemd-binfmt`), or run `edgeml setup-aarch64` as root")


def check_host_tools(*, for_setup: bool) -> tuple[str, tuple[int, ...]]:
    """qemu (always) and, for building, mmdebstrap; all that is missing in one line."""
    missing = []
    qemu: tuple[str, tuple[int, ...]] | None = None
    try:
        qemu = find_qemu()
    except Aarch64EnvError as e:
        if not for_setup:
            raise
        missing.append(str(e))
    if for_setup and shutil.which("mmdebstrap") is None:
        missing.append("mmdebstrap not found: install mmdebstrap (`apt-get install mmdebstrap`)")
    if missing:
        raise Aarch64EnvError("; ".join(missing))
    assert qemu is not None
    return qemu


# ----------------------------------------------------------------------------------- the build

def host_pins() -> dict[str, str]:
    """The host's versions of the runtime packages, without local tags (2.13.0+cpu -> 2.13.0)."""
    pins = {}
    for dist in PINNED:
        try:
            pins[dist] = version(dist).split("+")[0]
        except PackageNotFoundError:
            raise Aarch64EnvError(f"{dist} is not installed on the host; reinstall edgeml") from None
    return pins


def find_env(home: str | Path | None = None) -> Aarch64Env:
    """The built environment in ``home``; Aarch64EnvError saying how to build it otherwise."""
    home = Path(home) if home is not None else default_home()
    qemu, _ = check_host_tools(for_setup=False)
    env = Aarch64Env(home, qemu)
    if not env.python.is_file() or not (env.site_packages / COMPLETE).is_file():
        raise Aarch64EnvError(f"no aarch64 environment in {home}: run `edgeml setup-aarch64` "
                              f"(about {APPROX_BYTES / 1e9:.1f} GB of disk, 10-30 minutes)")
    return env


def disk_usage(path: Path) -> int:
    """Bytes allocated under ``path`` (one file system, links not followed)."""
    total = 0
    dev = path.stat().st_dev
    for root, dirs, files in os.walk(path):
        for name in files + dirs:
            try:
                st = os.lstat(os.path.join(root, name))
            except OSError:
                continue
            if st.st_dev == dev:
                total += st.st_blocks * 512
        dirs[:] = [d for d in dirs if os.lstat(os.path.join(root, d)).st_dev == dev]
    return total


def _run(argv: Sequence[str], what: str, *, package: str) -> None:
    """Run a build step with its output on the terminal; a failure is one line naming the step."""
    try:
        proc = subprocess.run(list(argv), stdin=subprocess.DEVNULL)
    except OSError as e:
        raise Aarch64EnvError(f"{what}: cannot run {argv[0]} ({e}); install {package}") from None
    if proc.returncode != 0:
        raise Aarch64EnvError(f"{what} failed (exit {proc.returncode}; its output is above)")


def _remove(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        shutil.rmtree(path)


def _fmt_seconds(s: float) -> str:
    return f"{int(s // 60)}m{int(s % 60):02d}s" if s >= 60 else f"{s:.0f}s"


def build_rootfs(home: Path, *, suite: str = SUITE, mirror: str = MIRROR) -> None:
    partial = home / "rootfs.partial"
    _remove(partial)
    _run(["mmdebstrap", "--arch=arm64", "--variant=apt", f"--include={','.join(DEBIAN_PACKAGES)}",
          suite, str(partial), mirror], "mmdebstrap (the arm64 Debian root file system)", package="mmdebstrap")
    _remove(home / "rootfs")
    partial.rename(home / "rootfs")


def pip_target_command(target: Path, requirements: Sequence[str], *, no_deps: bool = False) -> list[str]:
    """The host pip fetching aarch64 cp311 wheels (never sdists) into ``target``."""
    cmd = [sys.executable, "-m", "pip", "install", "--disable-pip-version-check", "--no-compile",
           "--only-binary=:all:", "--python-version", PYTHON[0], "--implementation", "cp", "--abi", PYTHON[1],
           "--target", str(target)]
    for platform in MANYLINUX:
        cmd += ["--platform", platform]
    if no_deps:
        cmd.append("--no-deps")
    return cmd + list(requirements)


def install_wheels(home: Path, pins: dict[str, str]) -> None:
    partial = home / "site-packages.partial"
    _remove(partial)
    with_deps = [f"{d}=={pins[d]}" for d in PINNED if d != "executorch"] + list(EXECUTORCH_RUNTIME_DEPS)
    _run(pip_target_command(partial, with_deps), "pip (aarch64 wheels of torch, numpy, onnxruntime)",
         package="pip")
    _run(pip_target_command(partial, [f"executorch=={pins['executorch']}"], no_deps=True),
         "pip (the aarch64 executorch wheel)", package="pip")
    if sys.version_info[:2] == tuple(int(v) for v in PYTHON[0].split(".")):
        # Byte-compile natively: under emulation the first import would spend minutes on it.
        subprocess.run([sys.executable, "-m", "compileall", "-q", "-j", "0", str(partial)],
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    (partial / COMPLETE).write_text(json.dumps(pins) + "\n")
    _remove(home / "site-packages")
    partial.rename(home / "site-packages")


def probe(env: Aarch64Env, cpu: str = "max,sme=off", *, timeout: float | None = 1800) -> dict:
    """Import torch, ExecuTorch and ONNX Runtime in the emulated Python; what it reports."""
    import tempfile

    script = Path(__file__).with_name("_remote_runner.py")
    with tempfile.TemporaryDirectory(prefix="edgeml-aarch64-") as tmp:
        info_path = Path(tmp) / "info.json"
        try:
            proc = subprocess.run(env.command(cpu, [str(script), "--probe", "--info", str(info_path)]),
                                  env=env.environ(cpu), capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise Aarch64EnvError(f"the aarch64 Python did not start within {timeout:.0f} s") from None
        if proc.returncode != 0 or not info_path.is_file():
            tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            raise Aarch64EnvError(f"the aarch64 Python in {env.home} fails to start ({tail}); "
                                  "rebuild it with `edgeml setup-aarch64 --force`")
        return json.loads(info_path.read_text())


def setup_env(home: str | Path | None = None, *, suite: str = SUITE, mirror: str = MIRROR, force: bool = False,
              log: Callable[[str], None] = print) -> dict:
    """Build (or complete) the environment in ``home``; returns what env.json records."""
    home = Path(home) if home is not None else default_home()
    t_start = time.monotonic()
    log("[1/4] host tools")
    qemu, qemu_version = check_host_tools(for_setup=True)
    binfmt = ensure_binfmt(log)
    log(f"  {qemu} (qemu {'.'.join(map(str, qemu_version))}), mmdebstrap, binfmt_misc handler {binfmt!r}")
    pins = host_pins()
    home.mkdir(parents=True, exist_ok=True)
    env = Aarch64Env(home, qemu)
    have_rootfs = env.python.is_file() and not force
    marker = env.site_packages / COMPLETE
    have_wheels = marker.is_file() and json.loads(marker.read_text()) == pins and not force
    need = (0 if have_rootfs else 300_000_000) + (0 if have_wheels else 4_700_000_000)
    free = shutil.disk_usage(home).free
    if need and free < need * 1.2:
        raise Aarch64EnvError(f"{home} has {free / 1e9:.1f} GB free; the aarch64 environment needs about "
                              f"{need / 1e9:.1f} GB more: free some space or pass --home elsewhere")
    log(f"  building in {home} (about {APPROX_BYTES / 1e9:.1f} GB when done; {free / 1e9:.0f} GB free)")
    seconds: dict[str, float] = {}

    t = time.monotonic()
    if have_rootfs:
        log(f"[2/4] Debian {suite} arm64 root file system: already built, kept")
    else:
        log(f"[2/4] Debian {suite} arm64 root file system with mmdebstrap ({', '.join(DEBIAN_PACKAGES)}) "
            f"from {mirror}")
        build_rootfs(home, suite=suite, mirror=mirror)
        seconds["rootfs"] = round(time.monotonic() - t, 1)
        log(f"  done in {_fmt_seconds(seconds['rootfs'])}, {disk_usage(env.rootfs) / 1e6:.0f} MB")

    t = time.monotonic()
    wanted = ", ".join(f"{d} {v}" for d, v in pins.items())
    if have_wheels:
        log(f"[3/4] aarch64 wheels ({wanted}): already installed, kept")
    else:
        log(f"[3/4] aarch64 wheels from PyPI by the host's pip: {wanted} "
            "(torch brings about 3 GB of CUDA libraries it requires)")
        install_wheels(home, pins)
        seconds["wheels"] = round(time.monotonic() - t, 1)
        log(f"  done in {_fmt_seconds(seconds['wheels'])}, {disk_usage(env.site_packages) / 1e9:.1f} GB")

    t = time.monotonic()
    log("[4/4] first start of the aarch64 Python under qemu (importing torch under emulation takes minutes)")
    info = probe(env)
    seconds["probe"] = round(time.monotonic() - t, 1)
    for dist in ("executorch", "onnxruntime"):
        if str(info.get(dist, "")).startswith("unavailable"):
            if dist == "executorch":
                raise Aarch64EnvError(f"ExecuTorch does not import in the aarch64 Python: {info[dist]}")
            log(f"  note: ONNX Runtime is {info[dist]}; .onnx artifacts cannot be checked on aarch64")
    log(f"  aarch64 Python {info.get('python')}: torch {info.get('torch')}, executorch {info.get('executorch')}, "
        f"onnxruntime {info.get('onnxruntime')} (import took {info.get('seconds_import')} s)")
    size = disk_usage(home)
    record = {"suite": suite, "mirror": mirror, "qemu": qemu, "qemu_version": ".".join(map(str, qemu_version)),
              "pins": pins, "probe": info, "seconds": seconds, "bytes": size,
              "built": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    (home / "env.json").write_text(json.dumps(record, indent=2) + "\n")
    log(f"aarch64 environment ready in {home}: {size / 1e9:.1f} GB on disk, "
        f"{_fmt_seconds(time.monotonic() - t_start)} this run")
    return record

"""The ARM benchmark's tools: Debian packages, qemu's instruction-counting plugin, driver builds, runs.

Everything comes from Debian's archive (bookworm): the aarch64 cross compiler, qemu-user, the
arm64 OpenBLAS through multiarch, glib headers, and qemu's own source package for the plugin
(`tests/plugin/insn.c` with `include/qemu/qemu-plugin.h`, fetched with `apt-get source` after
adding a deb-src entry, built against the glib headers as a shared object). The plugin source
is taken from the exact source version of the installed qemu-user, so its API matches.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path

def _source_checkout() -> Path:
    """The checkout whose cpp/ the driver is built from: this file's own tree in a source checkout,
    else the working directory (an installed package carries no C++ sources)."""
    here = Path(__file__).resolve().parents[2]
    return here if (here / "cpp" / "CMakeLists.txt").is_file() else Path.cwd()


REPO = _source_checkout()
CPP_DIR = REPO / "cpp"
TOOLCHAIN_FILE = CPP_DIR / "toolchains" / "aarch64-linux-gnu.cmake"
APT_PACKAGES = ("g++-aarch64-linux-gnu", "qemu-user", "libopenblas-dev:arm64", "libglib2.0-dev", "pkg-config",
                "xz-utils")
SYSROOT = Path("/usr/aarch64-linux-gnu")
ARM64_LIBS = ("/usr/lib/aarch64-linux-gnu/openblas-pthread", "/usr/lib/aarch64-linux-gnu")
QEMU_CPU = "cortex-a72"          # a Raspberry Pi 4's core
OPENBLAS_CORETYPE = "CORTEXA72"  # OpenBLAS's kernels for that core, pinned rather than detected
DEB_SRC_FILE = Path("/etc/apt/sources.list.d/framegate-deb-src.sources")


class ToolchainError(RuntimeError):
    """A tool is missing or a build step failed; the message says which and how to fix it."""


def run(cmd: list[str], what: str, **kwargs) -> subprocess.CompletedProcess:
    """Run `cmd`, raising ToolchainError with its output tail if it fails."""
    result = subprocess.run(cmd, capture_output=True, text=True, **kwargs)
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-15:])
        raise ToolchainError(f"{what} failed ({' '.join(map(str, cmd))}):\n{tail}")
    return result


def _installed(package: str) -> bool:
    if shutil.which("dpkg-query") is None:  # not a Debian system: nothing counts as installed
        return False
    result = subprocess.run(["dpkg-query", "-W", "-f=${Status}", package], capture_output=True, text=True)
    return result.returncode == 0 and "install ok installed" in result.stdout


def missing_packages() -> list[str]:
    return [p for p in APT_PACKAGES if not _installed(p)]


def _apt(args: list[str], what: str, cwd: Path | None = None) -> None:
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    run([*sudo, "apt-get", *args], what, env=env, cwd=cwd)


def install_packages(log=print) -> None:
    """Install whatever of APT_PACKAGES is missing (enabling the arm64 architecture first)."""
    missing = missing_packages()
    if not missing:
        return
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    foreign = run(["dpkg", "--print-foreign-architectures"], "dpkg").stdout.split()
    if "arm64" not in foreign:
        log("enabling the arm64 architecture (dpkg --add-architecture arm64)")
        run([*sudo, "dpkg", "--add-architecture", "arm64"], "dpkg --add-architecture arm64")
    log(f"installing {' '.join(missing)} (apt-get)")
    _apt(["update", "-qq"], "apt-get update")
    _apt(["install", "-y", "-qq", "--no-install-recommends", *missing], "apt-get install")


def missing_tools(build_dir: Path) -> list[str]:
    """What the cross/qemu part still lacks (empty: it can run without installing anything)."""
    missing = [p for p in missing_packages() if p != "xz-utils"]
    if not (build_dir / "qemu-plugin" / "libinsn.so").exists():
        missing.append(f"{build_dir / 'qemu-plugin' / 'libinsn.so'} (built by the ARM benchmark on its first run)")
    return missing


def _add_deb_src() -> None:
    """A deb-src twin of every Debian archive entry, so `apt-get source` can fetch qemu."""
    main = Path("/etc/apt/sources.list.d/debian.sources")
    if main.exists():
        text = main.read_text(encoding="utf-8")
        if re.search(r"^Types:.*deb-src", text, re.M):
            return
        stanzas = re.sub(r"^Types:.*$", "Types: deb-src", text, flags=re.M)
    else:
        legacy = Path("/etc/apt/sources.list")
        lines = legacy.read_text(encoding="utf-8").splitlines() if legacy.exists() else []
        if any(line.startswith("deb-src ") for line in lines):
            return
        stanzas = "\n".join("deb-src " + line[4:] for line in lines if line.startswith("deb "))
        target = DEB_SRC_FILE.with_suffix(".list")
        _write_root(target, stanzas + "\n")
        return
    _write_root(DEB_SRC_FILE, stanzas)


def _write_root(path: Path, text: str) -> None:
    if os.geteuid() == 0:
        path.write_text(text, encoding="utf-8")
    else:
        run(["sudo", "tee", str(path)], f"writing {path}", input=text)


def qemu_plugin(build_dir: Path, log=print) -> Path:
    """qemu's insn plugin as a shared object (built once into build_dir/qemu-plugin)."""
    work = build_dir / "qemu-plugin"
    plugin = work / "libinsn.so"
    if plugin.exists():
        return plugin
    work.mkdir(parents=True, exist_ok=True)
    version = run(["dpkg-query", "-W", "-f=${source:Version}", "qemu-user"], "dpkg-query qemu-user").stdout.strip()
    if not list(work.glob("qemu_*.orig.tar.*")):
        log(f"fetching qemu {version}'s source package (deb-src entry + apt-get source)")
        _add_deb_src()
        _apt(["update", "-qq"], "apt-get update (deb-src)")
        _apt(["source", "--download-only", f"qemu={version}"], "apt-get source qemu", cwd=work)
    orig = sorted(work.glob("qemu_*.orig.tar.*"))[0]
    wanted = {"tests/plugin/insn.c": work / "insn.c", "include/qemu/qemu-plugin.h": work / "qemu-plugin.h"}
    log(f"extracting the insn plugin from {orig.name}")
    with tarfile.open(orig) as tar:
        for member in tar:
            rel = member.name.split("/", 1)[-1]
            if rel in wanted and member.isfile():
                wanted.pop(rel).write_bytes(tar.extractfile(member).read())
                if not wanted:
                    break
    if wanted:
        raise ToolchainError(f"{orig}: lacks {', '.join(wanted)}")
    glib = run(["pkg-config", "--cflags", "glib-2.0"], "pkg-config glib-2.0").stdout.split()
    run(["gcc", "-shared", "-fPIC", "-O2", "-I", str(work), *glib, str(work / "insn.c"), "-o", str(plugin)],
        "building the qemu insn plugin")
    return plugin


def build_driver(build_dir: Path, cross: bool) -> Path:
    """framegate_driver built from cpp/ (Release, -Werror, a real BLAS required): natively against
    this Python's scipy-openblas32, or for aarch64 against Debian's arm64 OpenBLAS."""
    if not (CPP_DIR / "CMakeLists.txt").is_file():
        raise ToolchainError(f"{CPP_DIR}: no C++ sources; run from the root of a framegate source checkout")
    out = build_dir / ("aarch64" if cross else "native")
    args = ["-DCMAKE_BUILD_TYPE=Release", "-DFRAMEGATE_WERROR=ON", "-DFRAMEGATE_BUILD_PYTHON=OFF",
            "-DFRAMEGATE_REQUIRE_BLAS=ON"]
    args += [f"-DCMAKE_TOOLCHAIN_FILE={TOOLCHAIN_FILE}"] if cross else [f"-DFRAMEGATE_BLAS_PYTHON={sys.executable}"]
    generator = ["-G", "Ninja"] if shutil.which("ninja") else []
    if not (out / "CMakeCache.txt").exists():
        run(["cmake", "-S", str(CPP_DIR), "-B", str(out), *generator, *args], f"configuring {out}")
    run(["cmake", "--build", str(out), "--target", "framegate_driver", "--parallel", "2"], f"building {out}")
    return out / "framegate_driver"


@dataclass(frozen=True)
class DriverRun:
    stdout: str
    instructions: int | None  # guest instructions (qemu with the plugin), else None


def run_driver(driver: Path, args: list[str], arm: bool = False, plugin: Path | None = None,
               log_file: Path | None = None) -> DriverRun:
    """Run the driver natively or under qemu-aarch64 (one BLAS thread either way)."""
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1")
    if not arm:
        return DriverRun(run([str(driver), *args], "framegate_driver", env=env).stdout, None)
    cmd = ["qemu-aarch64", "-L", str(SYSROOT), "-cpu", QEMU_CPU, "-E", "OPENBLAS_NUM_THREADS=1",
           "-E", f"OPENBLAS_CORETYPE={OPENBLAS_CORETYPE}", "-E", f"LD_LIBRARY_PATH={':'.join(ARM64_LIBS)}"]
    if plugin is not None:
        cmd += ["-plugin", f"{plugin},inline=on", "-d", "plugin", "-D", str(log_file)]
    stdout = run([*cmd, str(driver), *args], "framegate_driver under qemu-aarch64").stdout
    if plugin is None:
        return DriverRun(stdout, None)
    counts = re.findall(r"insns: (\d+)", log_file.read_text(encoding="utf-8"))
    if not counts:
        raise ToolchainError(f"{log_file}: the insn plugin reported no count")
    return DriverRun(stdout, sum(map(int, counts)))


def versions() -> dict[str, str]:
    """The cross compiler's and qemu's versions, for the report."""
    def first_line(cmd: list[str]) -> str:
        return run(cmd, cmd[0]).stdout.splitlines()[0]

    return {"cross_compiler": first_line(["aarch64-linux-gnu-g++", "--version"]),
            "qemu": first_line(["qemu-aarch64", "--version"]),
            "openblas_arm64": run(["dpkg-query", "-W", "-f=${Version}", "libopenblas-dev:arm64"], "dpkg").stdout}

"""Builds rustrnn's release wheels and checks each one in a fresh virtualenv without Rust.

    python tests/wheels/check_wheels.py build [VERSION ...]   # make wheels
    python tests/wheels/check_wheels.py test [VERSION ...]    # make test-wheels

VERSION is ``3.12`` and the like, or ``all`` (3.9 to 3.13). ``build`` defaults to all,
``test`` to this interpreter's version and one other that is found. An interpreter that
is not found, or that pyproject.toml's ``requires-python`` excludes, is skipped with a
note; ``test`` fails when it could test none.

build, per interpreter: a build virtualenv (``target/wheels/cpXY/buildenv``, kept as a
cache; ``test`` builds in a temporary directory, removed once the wheel is built: with
torch's CUDA libraries a build env is gigabytes, and CI on a full disk fails) holding
pyproject.toml's build requirements, so torch-sys compiles against that interpreter's
headers and its ``torch`` wheel, and its own ``CARGO_TARGET_DIR``; then
``maturin build --release --auditwheel warn --out dist``. ``warn``: the extension links
``libtorch_cpu.so``, ``libc10.so`` and ``libtorch_python.so``, which the pinned ``torch``
provides at run time and must not be copied in (``repair`` would copy libtorch and the
CUDA libraries, gigabytes). The wheel is then inspected: the tag, py.typed and the stubs,
no bundled libraries, the torch pin in its metadata, and (with objdump) that no
instruction beyond baseline x86-64 appears outside the functions that are dispatched at
run time (whose names say ``avx2``/``avx512``).

test, per wheel: a fresh virtualenv of that interpreter, PATH without cargo or rustc,
``pip install`` of the wheel (binary packages only), then ``smoke.py``, and its stack
checks again under ``RUSTRNN_CPU=portable``. Prints build time, wheel size, install and
smoke times.
"""

import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DIST = os.path.join(ROOT, "dist")
WORK = os.path.join(ROOT, "target", "wheels")
SMOKE = os.path.join(ROOT, "tests", "wheels", "smoke.py")
ALL = ["3.9", "3.10", "3.11", "3.12", "3.13"]
# Functions compiled with #[target_feature] and called only after run-time detection.
DISPATCHED = re.compile(r"avx2|avx512|_xgetbv")
# Instructions beyond x86-64's baseline (SSE2) that are not VEX/EVEX-encoded.
BEYOND_SSE2 = re.compile(
    r"(pshufb|palignr|pabs[bwd]|phadd|phsub|pmaddubsw|pmulhrsw|psign[bwd]|ptest|pblend|"
    r"blendv?p[sd]|pmovzx|pmovsx|pmaxs[bd]|pmins[bd]|pmaxu[wd]|pminu[wd]|round[ps][sd]|"
    r"dpp[sd]|insertps|extractps|pextr[bdq]|pinsr[bdq]|pcmpeqq|pcmpgtq|pmuldq|pmulld|"
    r"packusdw|movntdqa|mpsadbw|phminposuw|crc32|pcmp[ei]str[im]|popcnt|lzcnt|movbe|adcx|"
    r"adox|rdrand|rdseed|aes|pclmul|sha1|sha256|xgetbv)"
)


class Failure(Exception):
    pass


def pyproject():
    """requires-python, the build requirements and the torch pin (stdlib only: no tomllib
    before Python 3.11)."""
    text = open(os.path.join(ROOT, "pyproject.toml")).read()
    floor = re.search(r'^requires-python = ">=(\d+)\.(\d+)"', text, re.M)
    requires = re.search(r"^requires = \[(.*)\]", text, re.M).group(1)
    torch = re.search(r'^\s*"torch==([^"]+)"', text, re.M).group(1)
    return (int(floor[1]), int(floor[2])), re.findall(r'"([^"]+)"', requires), torch


def find_python(version):
    """A working ``pythonX.Y`` with venv: on PATH, else under pyenv, else in /usr."""
    name = f"python{version}"
    found = [shutil.which(name)]
    pyenv = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    pattern = os.path.join(pyenv, "versions", f"{version}.*", "bin", name)
    patch = lambda p: [int(x) for x in re.findall(r"\d+", p.split("versions")[-1])]  # noqa: E731
    found += sorted(glob.glob(pattern), key=patch, reverse=True)
    found += [f"/usr/local/bin/{name}", f"/usr/bin/{name}"]
    probe = "import sys, ensurepip, venv; print('%d.%d' % sys.version_info[:2])"
    for python in filter(None, found):
        try:
            r = subprocess.run([python, "-c", probe], capture_output=True, text=True, timeout=60)
        except OSError:
            continue
        if r.returncode == 0 and r.stdout.strip() == version:
            return python
    return None


def run(cmd, log=None, **kwargs):
    """Runs ``cmd``; its output goes to ``log`` (shown in part on failure). Seconds taken."""
    start = time.perf_counter()
    with open(log or os.devnull, "a") as out:
        out.write(f"$ {' '.join(map(str, cmd))}\n")
        out.flush()
        r = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, **kwargs)
    if r.returncode != 0:
        tail = open(log).read()[-6000:] if log else ""
        raise Failure(f"{' '.join(map(str, cmd))} exited with {r.returncode}\n{tail}")
    return time.perf_counter() - start


def check_no_native_flags():
    """The build must not target the build machine's CPU (see the module docstring)."""
    flags = re.compile(r"target-cpu|target-feature|-march|-mavx|-mfma")
    for var in ["RUSTFLAGS", "CARGO_ENCODED_RUSTFLAGS", "CARGO_BUILD_RUSTFLAGS", "CFLAGS",
                "CXXFLAGS", "CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUSTFLAGS"]:  # fmt: skip
        if flags.search(os.environ.get(var, "")):
            raise Failure(f"{var}={os.environ[var]!r} would tie the wheels to this CPU")
    home = os.environ.get("CARGO_HOME", os.path.expanduser("~/.cargo"))
    for config in [os.path.join(ROOT, ".cargo", "config.toml"), os.path.join(home, "config"),
                   os.path.join(home, "config.toml")]:  # fmt: skip
        if os.path.exists(config) and flags.search(open(config).read()):
            raise Failure(f"{config} sets a target CPU or feature; the wheels must not")


def check_baseline(extension):
    """No instruction beyond x86-64 baseline outside the dispatched functions."""
    if shutil.which("objdump") is None:
        return "not checked (no objdump)"
    dis = subprocess.run(
        ["objdump", "-d", "-C", "--no-show-raw-insn", extension],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    function, bad, dispatched = None, {}, set()
    for line in dis.splitlines():
        head = re.match(r"^[0-9a-f]+ <(.*)>:$", line)
        if head:
            function = head.group(1)
            continue
        fields = line.split("\t")
        if len(fields) < 2 or not fields[1].strip():
            continue
        mnemonic = fields[1].split()[0]
        if (
            mnemonic.startswith("v")
            or re.search(r"%[yz]mm|%k[0-7]\b", fields[1])
            or (BEYOND_SSE2.fullmatch(mnemonic))
        ):
            if DISPATCHED.search(function or ""):
                dispatched.add(function)
            else:
                bad.setdefault(function, mnemonic)
    if bad:
        listing = "\n".join(f"  {f}: {m}" for f, m in sorted(bad.items(), key=str))
        raise Failure(f"{extension}: non-baseline instructions outside dispatch:\n{listing}")
    return f"baseline x86-64 outside {len(dispatched)} dispatched functions"


def inspect(wheel, torch_pin):
    """The wheel's tag and contents; returns a line for the report."""
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        info = next(n.split("/")[0] for n in names if n.endswith(".dist-info/METADATA"))
        tag = re.search(r"^Tag: (.*)$", z.read(f"{info}/WHEEL").decode(), re.M).group(1)
        metadata = z.read(f"{info}/METADATA").decode()
        extensions = [n for n in names if re.fullmatch(r"rustrnn/_rustrnn\.[^/]+\.so", n)]
        libraries = [n for n in names if re.search(r"\.so(\.\d+)*$", n)]
        missing = {"rustrnn/py.typed", "rustrnn/_rustrnn.pyi"} - set(names)
        if missing or len(extensions) != 1 or libraries != extensions:
            raise Failure(f"{wheel}: missing {missing}, extension {extensions}, libs {libraries}")
        if f"Requires-Dist: torch=={torch_pin}\n" not in metadata:
            raise Failure(f"{wheel}: its metadata does not pin torch=={torch_pin}")
        if not re.search(r"-manylinux_\d+_\d+_x86_64$", tag):
            raise Failure(f"{wheel}: tag {tag}, expected a manylinux one")
        with tempfile.TemporaryDirectory() as tmp:
            baseline = check_baseline(z.extract(extensions[0], tmp))
    return f"{tag}; py.typed and stubs; no bundled libraries; torch=={torch_pin}; {baseline}"


def logs(version):
    """WORK/cpXY: where a version's build and test logs (and ``build``'s cache) live."""
    return os.path.join(WORK, "cp" + version.replace(".", ""))


def build(version, python, requires, torch_pin, work):
    """Builds in ``work`` (build env and cargo target); the log goes to ``logs(version)``."""
    env_dir = os.path.join(work, "buildenv")
    bin_dir = os.path.join(env_dir, "bin")
    log = os.path.join(logs(version), "build.log")
    os.makedirs(os.path.dirname(log), exist_ok=True)
    open(log, "w").close()
    print(f"[{version}] build env {env_dir} (log {log})", flush=True)
    if not os.path.exists(os.path.join(bin_dir, "python")):
        run([python, "-m", "venv", env_dir], log)
    run([os.path.join(bin_dir, "python"), "-m", "pip", "install", "-q", *requires], log)
    env = dict(os.environ, VIRTUAL_ENV=env_dir, CARGO_TARGET_DIR=os.path.join(work, "cargo"))
    env["PATH"] = bin_dir + os.pathsep + env["PATH"]
    for var in ["PYTHONHOME", "PYTHONPATH", "CONDA_PREFIX"]:
        env.pop(var, None)
    cmd = [os.path.join(bin_dir, "maturin"), "build", "--release", "--auditwheel", "warn"]
    cmd += ["-i", os.path.join(bin_dir, "python"), "--out", DIST]
    seconds = run(cmd, log, env=env, cwd=ROOT)
    built = re.findall(r"Built wheel for .* to (\S+\.whl)", open(log).read())
    if not built:
        raise Failure(f"no wheel reported in {log}")
    wheel = built[-1]
    size = os.path.getsize(wheel) / 1e6
    print(f"[{version}] built {os.path.basename(wheel)} in {seconds:.0f} s, {size:.2f} MB")
    print(f"[{version}]   {inspect(wheel, torch_pin)}", flush=True)
    return wheel, seconds, size


def without_rust(env):
    """``env`` with no Rust toolchain on PATH and no build or virtualenv variables."""
    keep = []
    for d in env.get("PATH", "").split(os.pathsep):
        if not any(os.path.exists(os.path.join(d, t)) for t in ("cargo", "rustc", "rustup")):
            keep.append(d)
    env = {k: v for k, v in env.items() if not re.match(r"CARGO|RUSTUP|RUSTC|VIRTUAL_ENV", k)}
    for var in ["PYTHONPATH", "PYTHONHOME", "LD_LIBRARY_PATH", "RUSTRNN_CPU"]:
        env.pop(var, None)
    env["PATH"] = os.pathsep.join(keep)
    return env


def test(version, python, wheel):
    with tempfile.TemporaryDirectory(prefix=f"rustrnn-wheel-{version}-") as tmp:
        venv = os.path.join(tmp, "venv")
        log = os.path.join(logs(version), "test.log")
        open(log, "w").close()
        env = without_rust(os.environ)
        run([python, "-m", "venv", venv], log, env=env)
        env["PATH"] = os.path.join(venv, "bin") + os.pathsep + env["PATH"]
        env["VIRTUAL_ENV"] = venv
        for tool in ("cargo", "rustc"):
            assert shutil.which(tool, path=env["PATH"]) is None, tool
        py = os.path.join(venv, "bin", "python")
        pip = [py, "-m", "pip", "install", "-q", "--only-binary=:all:", wheel]
        install = run(pip, log, env=env, cwd=tmp)
        smoke = run([py, SMOKE], log, env=env, cwd=tmp)
        portable = run([py, SMOKE, "--parity"], log, env=dict(env, RUSTRNN_CPU="portable"), cwd=tmp)
        lines = [line for line in open(log).read().splitlines() if not line.startswith("$")]
        for line in lines:
            print(f"[{version}]   {line}")
        print(
            f"[{version}] fresh venv without Rust: pip install {install:.0f} s,"
            f" smoke {smoke:.1f} s, portable parity {portable:.1f} s",
            flush=True,
        )
        return install, smoke + portable


def main(argv):
    if not argv or argv[0] not in ("build", "test"):
        raise SystemExit(__doc__)
    command, versions = argv[0], argv[1:]
    floor, requires, torch_pin = pyproject()
    here = "%d.%d" % sys.version_info[:2]
    if versions == ["all"] or (not versions and command == "build"):
        versions = ALL
    pythons, skipped = {}, []
    for v in versions or [here, "3.12", "3.11", "3.13", "3.10"]:
        if v in pythons:
            continue
        if tuple(map(int, v.split("."))) < floor:
            skipped.append(f"{v}: requires-python is >={floor[0]}.{floor[1]} (torch=={torch_pin})")
        elif find_python(v) is None:
            skipped.append(f"{v}: no working python{v} (with venv) found")
        else:
            pythons[v] = find_python(v)
        if not argv[1:] and command == "test" and len(pythons) == 2:
            break
    for note in skipped:
        print(f"SKIPPED {note}")
    if not pythons:
        raise SystemExit("no interpreter to build for")
    check_no_native_flags()
    report = []
    try:
        for v, python in pythons.items():
            install = smoke = None
            if command == "build":
                wheel, seconds, size = build(v, python, requires, torch_pin, logs(v))
            else:
                with tempfile.TemporaryDirectory(prefix=f"rustrnn-build-{v}-") as work:
                    wheel, seconds, size = build(v, python, requires, torch_pin, work)
                install, smoke = test(v, python, wheel)
            report.append((v, os.path.basename(wheel), size, seconds, install, smoke))
    except Failure as e:
        raise SystemExit(f"FAILED: {e}") from None
    print("\npython  wheel  MB  build_s  install_s  smoke_s")
    for v, name, size, seconds, install, smoke in report:
        extra = "" if install is None else f"  {install:.0f}  {smoke:.0f}"
        print(f"{v}  {name}  {size:.2f}  {seconds:.0f}{extra}")


if __name__ == "__main__":
    main(sys.argv[1:])

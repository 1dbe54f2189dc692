#!/usr/bin/env bash
# The prepared GPU check (issue 13), for a short loan of a machine with an NVIDIA GPU:
# rustrnn installed into a fresh virtualenv, every CUDA test, the CPU-side glue tests,
# then the stack, generation and training benchmarks on the GPU, and one summary; all
# unattended and inside TIME_BUDGET seconds. Each step's output goes to a log file under
# the results directory; only the summary is printed. Without a GPU it says so, runs the
# CPU-side tests (the CUDA ones all skip) and exits 0.
#
#   make gpu-check                       # or: bash bench/gpu_check.sh
#
# Environment:
#   RUSTRNN_WHEEL=path  install this prebuilt wheel (make wheels) with --no-deps, into a
#                       virtualenv that sees the base Python's packages (its torch)
#   WHEELHOUSE=dir      offline: every pip install is --no-index --find-links dir
#   BASE_PYTHON=exe     the Python the virtualenv is made from (default: python3, or
#                       /opt/torch/.venv/bin/python when only that one has torch)
#   SKIP_BUILD=1        no virtualenv: test the rustrnn that `python` imports as it is
#   RESULTS_DIR=dir     the logs and summary.txt (default: $OUT if set, else a temp dir)
#   TIME_BUDGET=480     seconds for everything; a step that no longer fits is skipped
#
# Exit status: 0 when every step that ran passed (or there is no GPU and the CPU-side
# tests passed), 1 when a test or benchmark failed or timed out, 2 when the check cannot
# run at all (said in one line before anything slow starts).
set -uo pipefail

cd "$(dirname "$0")/.." || exit 2
ROOT=$PWD
START=$SECONDS
BUDGET=${TIME_BUDGET:-480}
TORCH_WANT=2.13.0 # pyproject.toml's pin: the torch tch 0.26 is built for
RESULTS=${RESULTS_DIR:-${OUT:-}}
if [ -z "$RESULTS" ]; then
    RESULTS=$(mktemp -d "${TMPDIR:-/tmp}/rustrnn-gpu-check.XXXXXX")
fi
mkdir -p "$RESULTS" || exit 2
RESULTS=$(cd "$RESULTS" && pwd)
SUMMARY=()
FAILED=0

note() { SUMMARY+=("$*"); }

cannot_run() {
    echo "gpu-check: cannot run: $*"
    echo "gpu-check: logs in $RESULTS"
    exit 2
}

# step NAME LIMIT CMD...: CMD under `timeout`, its output in $RESULTS/NAME.log. Status
# 124 is a timeout, 125 a step skipped because the budget has no room left for it.
step() {
    local name=$1 limit=$2 room
    shift 2
    room=$((BUDGET - (SECONDS - START) - 10)) # ten seconds kept for the summary
    if [ "$room" -lt 15 ]; then
        echo "skipped: the time budget ($BUDGET s) was spent" >"$RESULTS/$name.log"
        return 125
    fi
    [ "$limit" -gt "$room" ] && limit=$room
    timeout --kill-after=10 "$limit" "$@" >"$RESULTS/$name.log" 2>&1
}

why() { # the words for a failed step's status
    case $1 in
        124 | 137) echo "timed out" ;;
        125) echo "skipped, no time left" ;;
        *) echo "failed (status $1)" ;;
    esac
}

missing_modules() { # the modules of "$@" that "$PY" cannot import
    "$PY" - "$@" <<'EOF'
import importlib.util
import sys

print(" ".join(m for m in sys.argv[1:] if importlib.util.find_spec(m) is None))
EOF
}

# ---------------------------------------------------------------- the environment
PIP_OFFLINE=()
if [ -n "${WHEELHOUSE:-}" ]; then
    [ -d "$WHEELHOUSE" ] || cannot_run "WHEELHOUSE=$WHEELHOUSE is not a directory"
    WHEELHOUSE=$(cd "$WHEELHOUSE" && pwd)
    PIP_OFFLINE=(--no-index --find-links "$WHEELHOUSE")
fi

if [ "${SKIP_BUILD:-}" = 1 ]; then
    PY=${PYTHON:-python}
    command -v "$PY" >/dev/null || cannot_run "SKIP_BUILD=1 but there is no $PY on PATH"
    # The subprocess tests start from other directories: PYTHONPATH entries made absolute.
    if [ -n "${PYTHONPATH:-}" ]; then
        abs=()
        IFS=: read -r -a parts <<<"$PYTHONPATH"
        for p in "${parts[@]}"; do
            if [ -d "$p" ]; then abs+=("$(cd "$p" && pwd)"); else abs+=("$p"); fi
        done
        PYTHONPATH=$(IFS=:; echo "${abs[*]}")
        export PYTHONPATH
    fi
    have=$("$PY" -c 'import torch; print(torch.__version__)' 2>/dev/null) ||
        cannot_run "$PY cannot import torch"
    [ "${have%%+*}" = "$TORCH_WANT" ] ||
        cannot_run "$PY has torch $have; rustrnn needs torch==$TORCH_WANT"
    note "install: none (SKIP_BUILD=1, $(command -v "$PY"))"
else
    unset PYTHONPATH # the installed package is the one under test, not python/ here
    BASE=${BASE_PYTHON:-}
    if [ -z "$BASE" ]; then
        BASE=python3
        # The lent GPU machines keep their CUDA torch in this virtualenv, not in python3.
        if ! python3 -c 'import torch' >/dev/null 2>&1 && [ -x /opt/torch/.venv/bin/python ]; then
            BASE=/opt/torch/.venv/bin/python
        fi
    fi
    command -v "$BASE" >/dev/null || cannot_run "no $BASE: a Python 3.10 or later is needed"
    pyver=$("$BASE" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
    "$BASE" -c 'import sys; sys.exit(sys.version_info < (3, 10))' ||
        cannot_run "$BASE is Python $pyver; rustrnn needs 3.10 or later"
    base_torch=$("$BASE" -c 'import torch; print(torch.__version__)' 2>/dev/null || echo none)
    torch_wheel=
    if [ -n "${WHEELHOUSE:-}" ]; then
        torch_wheel=$(find "$WHEELHOUSE" -maxdepth 1 -name "torch-$TORCH_WANT*.whl" | head -1)
    fi
    if [ -n "${RUSTRNN_WHEEL:-}" ]; then
        [ -f "$RUSTRNN_WHEEL" ] || cannot_run "RUSTRNN_WHEEL=$RUSTRNN_WHEEL is not a file"
        RUSTRNN_WHEEL=$(cd "$(dirname "$RUSTRNN_WHEEL")" && pwd)/$(basename "$RUSTRNN_WHEEL")
        tag=$(basename "$RUSTRNN_WHEEL" | sed -n 's/^rustrnn-[^-]*-\(cp[0-9]*\)-.*/\1/p')
        if [ -n "$tag" ] && [ "$tag" != "cp${pyver/./}" ]; then
            cannot_run "$(basename "$RUSTRNN_WHEEL") is for $tag but $BASE is Python $pyver" \
                "(make wheels WHEELS=$pyver builds one)"
        fi
    elif ! command -v cargo >/dev/null; then
        cannot_run "no cargo: building rustrnn from source needs a Rust toolchain;" \
            "set RUSTRNN_WHEEL=path/to/rustrnn-*.whl (make wheels builds one)"
    fi

    VENV_DIR=$(mktemp -d "${TMPDIR:-/tmp}/rustrnn-gpu-venv.XXXXXX")
    trap 'rm -rf "$VENV_DIR"' EXIT
    if [ "${base_torch%%+*}" = "$TORCH_WANT" ]; then
        torch_from=base
        venv_args=(--system-site-packages)
    else
        torch_from=${torch_wheel:+wheelhouse}
        torch_from=${torch_from:-index}
        venv_args=()
    fi
    "$BASE" -m venv "${venv_args[@]}" "$VENV_DIR/venv" >"$RESULTS/venv.log" 2>&1 ||
        cannot_run "$BASE -m venv failed (Debian: apt-get install python3-venv); see venv.log"
    PY=$VENV_DIR/venv/bin/python
    export PATH=$VENV_DIR/venv/bin:$PATH # torch-sys's build script runs `python`
    if [ "$torch_from" = base ]; then
        # --system-site-packages reaches the base interpreter's own site-packages, not a
        # virtualenv's (/opt/torch/.venv): name torch's directory in a .pth as well.
        torch_site=$("$BASE" -c 'import os, torch; print(os.path.dirname(os.path.dirname(torch.__file__)))')
        "$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])' |
            { read -r site && echo "$torch_site" >"$site/_gpu_check_base.pth"; }
    fi
    online=no
    if [ -z "${WHEELHOUSE:-}" ] &&
        timeout 20 "$PY" -m pip index versions pip --retries 0 --timeout 5 \
            >"$RESULTS/network.log" 2>&1; then
        online=yes
    fi
    if [ "$torch_from" = index ] && [ -n "${WHEELHOUSE:-}" ]; then
        cannot_run "torch $base_torch is here, rustrnn needs torch==$TORCH_WANT, and" \
            "WHEELHOUSE=$WHEELHOUSE holds no torch-$TORCH_WANT wheel"
    elif [ "$torch_from" = index ] && [ "$online" = no ]; then
        cannot_run "torch $base_torch is here, rustrnn needs torch==$TORCH_WANT, and pip" \
            "cannot reach the package index: set WHEELHOUSE=dir holding the torch-$TORCH_WANT" \
            "wheel and its dependencies, or BASE_PYTHON=a Python with torch $TORCH_WANT"
    fi
    need=(numpy safetensors tqdm pytest)
    [ -z "${RUSTRNN_WHEEL:-}" ] && need+=(maturin)
    [ "$torch_from" = base ] || need+=(torch)
    absent=$(missing_modules "${need[@]}")
    if [ -n "$absent" ] && [ -z "${WHEELHOUSE:-}" ] && [ "$online" = no ]; then
        cannot_run "missing Python packages ($absent) and pip cannot reach the package" \
            "index: set WHEELHOUSE=dir holding their wheels"
    fi

    # -------------------------------------------------------------- the install
    # Not under `timeout`: a build cut short leaves nothing to test, and every way pip
    # could wait on the network was ruled out above.
    pip_install() { "$PY" -m pip install --disable-pip-version-check "${PIP_OFFLINE[@]}" "$@"; }
    install() {
        [ "$torch_from" = base ] || pip_install "torch==$TORCH_WANT" || return
        local want=() m
        for m in $(missing_modules numpy safetensors tqdm pytest maturin); do
            case $m in
                safetensors) want+=("safetensors>=0.4") ;;
                tqdm) want+=("tqdm>=4.60") ;;
                maturin) [ -n "${RUSTRNN_WHEEL:-}" ] || want+=("maturin>=1.5,<2") ;;
                *) want+=("$m") ;;
            esac
        done
        [ ${#want[@]} -eq 0 ] || pip_install "${want[@]}" || return
        if [ -n "${RUSTRNN_WHEEL:-}" ]; then
            pip_install --no-deps "$RUSTRNN_WHEEL"
        else
            # Against the torch installed above; build isolation would fetch another.
            pip_install --no-build-isolation --no-deps "$ROOT"
        fi
    }
    install >"$RESULTS/install.log" 2>&1 ||
        cannot_run "the install failed; see $RESULTS/install.log"
    if [ -n "${RUSTRNN_WHEEL:-}" ]; then
        note "install: $(basename "$RUSTRNN_WHEEL") into a fresh virtualenv, torch from $torch_from"
    else
        note "install: built from source into a fresh virtualenv, torch from $torch_from"
    fi
    note "install took $((SECONDS - START)) s"
fi

versions=$("$PY" -c 'import os, torch, rustrnn
print(torch.__version__, rustrnn.__version__, os.path.dirname(rustrnn.__file__))' 2>"$RESULTS/import.log") ||
    cannot_run "import rustrnn failed: $(tail -1 "$RESULTS/import.log")"
read -r TORCH_VERSION RUSTRNN_VERSION RUSTRNN_DIR <<<"$versions"
note "rustrnn imported from $RUSTRNN_DIR"

# ---------------------------------------------------------------- the GPU
no_gpu=
if ! command -v nvidia-smi >/dev/null 2>&1; then
    no_gpu="nvidia-smi not found"
elif ! nvidia-smi -L >"$RESULTS/nvidia-smi.log" 2>&1; then
    no_gpu="nvidia-smi sees no GPU"
elif ! "$PY" -c 'import sys, torch; sys.exit(not torch.cuda.is_available())' 2>/dev/null; then
    no_gpu="torch $TORCH_VERSION: torch.cuda.is_available() is False"
fi
if [ -n "$no_gpu" ]; then
    echo "no CUDA GPU: GPU parts skipped ($no_gpu)"
    GPU="none"
else
    GPU=$("$PY" -c 'import torch
print(f"{torch.cuda.get_device_name()} (CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()})")' \
        2>"$RESULTS/gpu.log") || GPU="$(head -1 "$RESULTS/nvidia-smi.log") (torch could not name it: gpu.log)"
fi

# ---------------------------------------------------------------- tests
pytest_line() { # pytest's closing counts, from its log
    grep -E '^[0-9]+ (passed|failed|skipped|deselected|error)|^no tests ran' "$RESULTS/$1.log" |
        tail -1 | sed 's/^=* *//; s/ *=*$//'
}

run_tests() { # run_tests NAME LABEL LIMIT PYTEST-ARGS...
    local name=$1 label=$2 limit=$3 status counts
    shift 3
    step "$name" "$limit" "$PY" -m pytest -q -rfE -p no:cacheprovider "$@"
    status=$?
    counts=$(pytest_line "$name")
    if [ $status -eq 0 ]; then note "$label: $counts"; else note "$label: ${counts:-no counts} -- $(why $status)"; fi
    if [ $status -ne 0 ]; then
        FAILED=1
        while read -r line; do note "    $line"; done < <(grep -E '^(FAILED|ERROR) ' "$RESULTS/$name.log" | head -8 | cut -c1-150)
    fi
}

GLUE=tests/test_libtorch_engine.py
CUDA_TESTS=(tests/test_cuda.py tests/test_rnn_parity.py tests/test_sampler.py tests/test_vocab.py)
if [ -f "$GLUE" ]; then
    run_tests glue-tests "CPU-side glue ($GLUE)" 240 "$GLUE"
else
    note "CPU-side glue: $GLUE not present"
fi
if [ -n "$no_gpu" ]; then
    run_tests cuda-tests "CUDA tests (tests/test_cuda.py, no GPU)" 120 -rs tests/test_cuda.py
else
    run_tests cuda-tests "CUDA tests (pytest -m cuda)" 240 -m cuda "${CUDA_TESTS[@]}"

    # ------------------------------------------------------------ benchmarks
    bench() { # bench NAME LIMIT GREP-PATTERN SCRIPT ARGS...
        local name=$1 limit=$2 pattern=$3 status
        shift 3
        step "$name" "$limit" "$PY" "$@" --device cuda --quick
        status=$?
        if [ $status -ne 0 ]; then
            FAILED=1
            note "$* --device cuda --quick: $(why $status); see $name.log"
            return
        fi
        note "$* --device cuda --quick:"
        while read -r line; do note "    $line"; done < <(grep -E "$pattern" "$RESULTS/$name.log")
    }
    bench bench_rnn 120 'rustrnn vs' bench/bench_rnn.py
    bench bench_rnn_large 150 'rustrnn vs' bench/bench_rnn.py --shape large
    bench bench_generate 120 '^batch' bench/bench_generate.py
    bench bench_train 150 '^tokens/s|^valid ppl, mean' bench/bench_train.py
fi

# ---------------------------------------------------------------- the summary
{
    echo "== rustrnn GPU check: GPU $GPU; torch $TORCH_VERSION; rustrnn $RUSTRNN_VERSION =="
    printf '%s\n' "${SUMMARY[@]}"
    echo "== $([ $FAILED -eq 0 ] && echo passed || echo FAILED) in $((SECONDS - START)) s; logs in $RESULTS =="
} | tee "$RESULTS/summary.txt"
exit $FAILED

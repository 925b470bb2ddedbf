#!/usr/bin/env bash
# Installs what the project needs on a fresh machine: system libraries for Open3D (import and headless
# rendering), then a virtual environment with the package. Usage: scripts/install.sh VENV [EXTRAS]
set -euo pipefail
venv=${1:-.venv}
extras=${2:-}

# --- system libraries: libusb for `import open3d`, Mesa's Vulkan driver for headless rendering
missing=()
# the linker cache, read once: ldconfig lives in /sbin, off an ordinary user's PATH, and piping it
# into `grep -q` under pipefail fails with SIGPIPE (141) once the list passes 64 KiB
libs=$( { command -v ldconfig >/dev/null 2>&1 && ldconfig -p || /sbin/ldconfig -p; } 2>/dev/null || true)
have_lib() {
    if [ -n "$libs" ]; then [[ "$libs" == *"$1"* ]]; return; fi
    # no readable cache: look where Debian and others keep shared libraries
    compgen -G "/usr/lib/*/$1" >/dev/null || compgen -G "/lib/*/$1" >/dev/null || [ -e "/usr/lib/$1" ] \
        || [ -e "/usr/lib64/$1" ]
}
have_lib libusb-1.0.so.0 || missing+=(libusb-1.0-0)
have_lib libvulkan.so.1 || missing+=(libvulkan1)
ls /usr/share/vulkan/icd.d/lvp_icd*.json >/dev/null 2>&1 || missing+=(mesa-vulkan-drivers)
have_lib libGL.so.1 || missing+=(libgl1)
have_lib libEGL.so.1 || missing+=(libegl1)
# Debian's python3 needs python3-venv to create the environment (unless one is already active)
if [ -z "${VIRTUAL_ENV:-}" ] && ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
    missing+=(python3-venv)
fi
# the viewer's window tests run under a private X server; without one they skip, saying so
if [[ "$extras" == *test* ]] && ! command -v Xvfb >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        missing+=(xvfb xauth)
    else
        echo "note: the viewer's window tests skip without Xvfb; to run them:  sudo apt-get install -y xvfb xauth"
    fi
fi
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "installing system libraries: ${missing[*]}"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    elif command -v apt-get >/dev/null; then
        echo "missing system libraries; run:  sudo apt-get install -y ${missing[*]}" >&2
        exit 1
    else
        echo "missing system libraries (Debian names): ${missing[*]}; install their equivalents" >&2
        exit 1
    fi
fi

# --- the Python environment: the active virtualenv, or $venv created here
if [ -n "${VIRTUAL_ENV:-}" ]; then
    python="$VIRTUAL_ENV/bin/python"
else
    python3 -c 'import sys; sys.exit(sys.version_info < (3, 10))' || {
        echo "Python >= 3.10 is needed, found $(python3 --version 2>&1)" >&2; exit 1; }
    [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
    python="$venv/bin/python"
fi
pip() { "$python" -m pip --disable-pip-version-check -q "$@"; }
# a bare `torch` requirement pulls a multi-GB CUDA build: take the CPU build first when none is present
"$python" -c 'import torch' 2>/dev/null || pip install "torch==2.13.0"
pip install -e ".${extras:+[$extras]}"

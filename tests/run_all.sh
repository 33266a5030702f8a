#!/usr/bin/env bash
# The project's one test command: provision what the tests need on a fresh Debian machine, lint, test.
# Idempotent: every step checks first, so a second run goes straight to ruff, mypy and pytest.
# Services (mosquitto, jackd) are not started here: the fixtures start their own, private instances.
# Extra arguments go to pytest, e.g. `bash tests/run_all.sh tests/test_outputs.py -x`.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export DEBIAN_FRONTEND=noninteractive

log() { printf '==> %s\n' "$*" >&2; }

# Root runs apt directly; anyone else needs sudo (checked only when something must be installed).
SUDO=()
if [[ $(id -u) -ne 0 ]]; then
    SUDO=(sudo --preserve-env=DEBIAN_FRONTEND)
fi

# --- system packages -------------------------------------------------------------------------
# Each package is installed only when dpkg says it is missing, so apt is not touched on later runs.
APT_PACKAGES=(mosquitto jackd2 fluidsynth libfluidsynth3 timgm6mb-soundfont iproute2 nftables iptables
              libnetfilter-queue-dev)
PY="$ROOT/.venv/bin/python"
if [[ ! -x "$PY" ]]; then
    APT_PACKAGES+=(python3 python3-venv)  # Debian's python3 cannot make a venv without python3-venv
fi

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$pkg")
    fi
done

if ((${#missing[@]})); then
    if ! command -v apt-get >/dev/null 2>&1; then
        log "missing system packages (${missing[*]}) and no apt-get: install them by hand"
        exit 1
    fi
    log "installing: ${missing[*]}"
    # jackd2's postinst asks whether to enable realtime scheduling; answer it up front (tests run
    # jackd with --no-realtime, and the limits file it would write is of no use on a CI box).
    if command -v debconf-set-selections >/dev/null 2>&1; then
        echo "jackd2 jackd/tweak_rt_limits boolean false" | "${SUDO[@]}" debconf-set-selections
    fi
    # Packages must not start their daemons (mosquitto would hold port 1883): the tests start their
    # own. Docker images already carry this policy file; elsewhere it is put in place for the install.
    policy=/usr/sbin/policy-rc.d
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' | "${SUDO[@]}" tee "$policy" >/dev/null
        "${SUDO[@]}" chmod +x "$policy"
        trap '"${SUDO[@]}" rm -f "$policy"' EXIT
    fi
    "${SUDO[@]}" apt-get update -qq
    "${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    if [[ $(trap -p EXIT) ]]; then
        "${SUDO[@]}" rm -f "$policy"
        trap - EXIT
    fi
fi

# --- python environment ----------------------------------------------------------------------
if [[ ! -x "$PY" ]]; then
    log "creating .venv"
    python3 -m venv "$ROOT/.venv"
    "$PY" -m pip install -q --upgrade pip
fi

# Reinstall only when the dependency declaration changed since the last successful install.
STAMP="$ROOT/.venv/.barcelona-install-stamp"
WANT="$(sha256sum pyproject.toml | cut -d' ' -f1)"
if [[ ! -f "$STAMP" || "$(cat "$STAMP")" != "$WANT" ]] || ! "$PY" -c "import agents" 2>/dev/null; then
    log "pip install -e '.[cpu,test,train,link,midi]'"
    # train: the exporter's and the training pipeline's own tests (torch 2.13.0 CPU, pinned).
    # midi: python-rtmidi, for the tests that play through real (JACK) MIDI ports.
    "$PY" -m pip install -q -e '.[cpu,test,train,link,midi]'
    # The NFQUEUE delay shim of the bad-network tests; without it those tests skip with a reason.
    "$PY" -m pip install -q netfilterqueue || log "netfilterqueue unavailable: delay tests will skip"
    echo "$WANT" >"$STAMP"
fi

# --- lint, type check and test --------------------------------------------------------------
# Lint and type failures do not stop the tests: one run reports all three, and any one fails the script.
log "ruff check ."
lint=0
"$ROOT/.venv/bin/ruff" check . || lint=$?

# Which files, the Python version and the untyped third-party modules are in pyproject's [tool.mypy].
log "mypy"
types=0
"$PY" -m mypy || types=$?

log "pytest"
tests=0
"$PY" -m pytest -q "$@" || tests=$?  # 5 ("no tests collected") stays a failure on purpose

if ((lint)); then
    log "ruff found problems (see above)"
fi
if ((types)); then
    log "mypy found problems (see above)"
fi
if ((tests)); then
    log "pytest failed with exit status $tests"
    exit "$tests"
fi
if ((lint)); then
    exit "$lint"
fi
exit "$types"

# shellcheck shell=bash
# Shared by scripts/test, scripts/demo and scripts/check: `source scripts/_env.sh`.
# Goes to the repository root and defines ensure_venv (the .venv with the project installed).

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_ROOT"
VENV="$REPO_ROOT/.venv"

say() { printf '%s\n' "[${0##*/}] $*" >&2; }
die() { say "error: $*"; exit 1; }

# Create .venv with python3 (or $PYTHON) when missing or broken, and install the project:
# `ensure_venv` installs what running Switchboard needs (`pip install -e .`), `ensure_venv test`
# adds the test extras (`pip install -e '.[test]'`: pytest, Playwright, ruff, mypy, ...).
# Again only when pyproject.toml is newer than the stamp, so repeat runs cost nothing.
ensure_venv() {
    local extras="${1:-}"
    if ! "$VENV/bin/python" -c '' 2>/dev/null; then
        local python="${PYTHON:-python3}"
        command -v "$python" >/dev/null || die "$python not found (Python >= 3.11 is needed)"
        say "creating .venv with $("$python" --version 2>&1)"
        rm -rf "$VENV"
        "$python" -m venv "$VENV" || die "'$python -m venv' failed (Debian: apt-get install python3-venv)"
    fi
    local target="." stamp="$VENV/.installed-runtime"
    if [[ -n "$extras" ]]; then
        target=".[$extras]"
        stamp="$VENV/.installed-$extras"
    elif [[ -f "$VENV/.installed-test" && ! pyproject.toml -nt "$VENV/.installed-test" ]]; then
        return 0  # the test install holds everything the runtime needs
    fi
    if [[ ! -f "$stamp" || pyproject.toml -nt "$stamp" ]]; then
        say "installing the project into .venv (pip install -e '$target')"
        local log="$VENV/pip-install.log"
        if ! "$VENV/bin/python" -m pip install --disable-pip-version-check -q -e "$target" >"$log" 2>&1; then
            tail -n 30 "$log" >&2
            die "pip install failed (full log: $log)"
        fi
        touch "$stamp"
    fi
}

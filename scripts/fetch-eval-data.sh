#!/usr/bin/env bash
# Fetches real English evaluation text, written by others, from a Debian package into DIR
# (default .models/eval/):
#
#   DIR/eval.txt        Jane Austen, "Persuasion" (1818), chapters 1-7, as Project Gutenberg
#                       lines (hard-wrapped, title page left out): ~111 KB, ~27k SmolLM2 tokens.
#                       For perplexity.
#   DIR/sentences.txt   300 sentences of Jane Austen, "Pride and Prejudice" (1813), one a line,
#                       5-60 words, taken evenly through the novel. For embedding figures.
#
# Source: Debian package r-cran-janeaustenr 1.0.0-1 (janeaustenr by Julia Silge, MIT; the novels
# are public domain), whose data/Rdata.rdb holds each novel as an R character vector of lines.
# The .deb is fetched with `apt-get download` (no root, no install; needs apt's package lists,
# i.e. `apt-get update` once, which this script runs itself when it is root and the download
# fails). The R data is read by a few lines of Python here (no R needed).
#
# Idempotent: files already present with the right sha256 are kept. Exits non-zero with a clear
# message when apt-get cannot download or a checksum does not match.
set -euo pipefail

dir="${1:-.models/eval}"
mkdir -p "$dir"
dir="$(cd "$dir" && pwd)"

DEB_PKG="r-cran-janeaustenr"
DEB_VERSION="1.0.0-1"
DEB_SHA="df6bddf211906d1ff404f8ff662c21b34e6660e7f54a311084e749050c019c95"
EVAL_SHA="248e37cfbf8d0e53ef4eb88e50bc3034460158c021db50b2a6dd55c6efaaa897"
SENT_SHA="96cf1c4c4a74f20c916de4584850401bcb9fbe8e5206d6ee1bd8a6e8eb13ed6c"

python="${PYTHON:-python3}"
command -v "$python" >/dev/null || { echo "fetch-eval-data: $python not found; install Python 3" >&2; exit 1; }

sha_ok() { [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$2" ]; }

if sha_ok "$dir/eval.txt" "$EVAL_SHA" && sha_ok "$dir/sentences.txt" "$SENT_SHA"; then
    echo "fetch-eval-data: eval.txt and sentences.txt present"
    exit 0
fi

command -v apt-get >/dev/null || { echo "fetch-eval-data: apt-get not found (needs a Debian-based system)" >&2; exit 1; }

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

download() {
    (cd "$tmp" && apt-get download "$DEB_PKG=$DEB_VERSION") >"$tmp/apt.log" 2>&1
}
if ! download; then
    if [ "$(id -u)" = 0 ]; then
        echo "fetch-eval-data: $DEB_PKG not in apt's lists; running apt-get update" >&2
        apt-get update -qq >"$tmp/update.log" 2>&1 || { tail -5 "$tmp/update.log" >&2; }
    fi
    if ! download; then
        echo "fetch-eval-data: 'apt-get download $DEB_PKG=$DEB_VERSION' failed (run 'apt-get update' as root; is the Debian archive reachable?):" >&2
        tail -5 "$tmp/apt.log" >&2
        exit 1
    fi
fi
deb="$(ls "$tmp"/*.deb)"
sha_ok "$deb" "$DEB_SHA" || { echo "fetch-eval-data: $(basename "$deb") checksum mismatch" >&2; exit 1; }

"$python" - "$deb" "$dir/eval.txt.part" "$dir/sentences.txt.part" <<'PY'
import io, re, struct, sys, tarfile, zlib

deb, eval_out, sent_out = sys.argv[1:]
MEMBER = "./usr/lib/R/site-library/janeaustenr/data/Rdata.rdb"


def deb_member(path, member):
    """One file of a .deb's data.tar.* (a .deb is an ar archive)."""
    with open(path, "rb") as fh:
        data = fh.read()
    if data[:8] != b"!<arch>\n":
        sys.exit("fetch-eval-data: not a .deb (ar) file")
    pos = 8
    while pos + 60 <= len(data):
        name = data[pos:pos + 16].decode().strip().rstrip("/")
        size = int(data[pos + 48:pos + 58].decode().strip())
        body = data[pos + 60:pos + 60 + size]
        pos += 60 + size + (size & 1)
        if name.startswith("data.tar"):
            with tarfile.open(fileobj=io.BytesIO(body), mode="r:*") as tar:
                return tar.extractfile(member).read()
    sys.exit("fetch-eval-data: no data.tar in the .deb")


def r_character_vectors(rdb):
    """The character vectors of an R lazy-load database: a run of objects, each a 4-byte
    big-endian length and a zlib stream holding R's XDR serialization ('X\\n')."""
    pos, out = 0, []
    while pos < len(rdb):
        (n,) = struct.unpack(">I", rdb[pos:pos + 4])
        d = zlib.decompressobj()
        raw = d.decompress(rdb[pos + 4:])
        if len(raw) != n or raw[:2] != b"X\n":
            sys.exit("fetch-eval-data: unexpected R data layout")
        pos = len(rdb) - len(d.unused_data)
        (version,) = struct.unpack(">i", raw[2:6])
        p = 14  # format, version, writer version, minimal reader version
        if version == 3:  # native encoding name
            (k,) = struct.unpack(">i", raw[p:p + 4])
            p += 4 + k
        flags, count = struct.unpack(">ii", raw[p:p + 8])
        p += 8
        if flags & 0xFF != 16:  # STRSXP
            continue
        strings = []
        for _ in range(count):
            f, k = struct.unpack(">ii", raw[p:p + 8])
            p += 8
            if f & 0xFF != 9:  # CHARSXP
                sys.exit("fetch-eval-data: unexpected R string element")
            strings.append("" if k < 0 else raw[p:p + k].decode("utf-8"))
            p += max(k, 0)
        out.append(strings)
    return out


books = {v[0]: v for v in r_character_vectors(deb_member(deb, MEMBER)) if v}

# eval.txt: Persuasion, from "Chapter 1" up to (not including) "Chapter 8", lines as they are.
lines = books["Persuasion"]
chapters = [i for i, l in enumerate(lines) if re.fullmatch(r"Chapter \d+", l)]
text = "\n".join(lines[chapters[0]:chapters[7]]).rstrip() + "\n"
with open(eval_out, "w", encoding="utf-8", newline="\n") as fh:
    fh.write(text)

# sentences.txt: Pride and Prejudice, paragraphs unwrapped, split into sentences (not after
# Mr./Mrs./Dr./St./Messrs.), kept when 5-60 words, balanced double quotes, starting with a
# capital and ending with . ! or ? (a closing quote allowed); 300 taken evenly through the book.
paragraphs, cur = [], []
for l in books["PRIDE AND PREJUDICE"] + [""]:
    if l.strip():
        cur.append(l.strip())
    elif cur:
        paragraphs.append(re.sub(r"\s+", " ", " ".join(cur)))
        cur = []
boundary = re.compile(r"(?<!\bMr\.)(?<!\bMrs\.)(?<!\bDr\.)(?<!\bSt\.)(?<!\bMessrs\.)"
                      r"(?<=[.!?])([\"']?)\s+(?=[\"']?[A-Z])")
sentences = []
for para in paragraphs:
    if re.fullmatch(r"Chapter \d+|PRIDE AND PREJUDICE|By Jane Austen", para):
        continue
    start, parts = 0, []
    for m in boundary.finditer(para):
        parts.append(para[start:m.end(1)])
        start = m.end()
    parts.append(para[start:])
    for s in (x.strip() for x in parts):
        if (5 <= len(s.split()) <= 60 and s.count('"') % 2 == 0 and "_" not in s
                and re.match(r'"?[A-Z]', s) and re.search(r'[.!?]"?$', s)):
            sentences.append(s)
N = 300
picked = [sentences[i * len(sentences) // N] for i in range(N)]
with open(sent_out, "w", encoding="utf-8", newline="\n") as fh:
    fh.write("\n".join(picked) + "\n")
print(f"fetch-eval-data: eval.txt {len(text.encode())} bytes, {len(text.split())} words; "
      f"sentences.txt {len(picked)} of {len(sentences)} candidate sentences")
PY

for f in eval.txt:"$EVAL_SHA" sentences.txt:"$SENT_SHA"; do
    name="${f%%:*}" want="${f#*:}"
    if ! sha_ok "$dir/$name.part" "$want"; then
        echo "fetch-eval-data: $name checksum mismatch (got $(sha256sum "$dir/$name.part" | cut -d' ' -f1))" >&2
        rm -f "$dir/eval.txt.part" "$dir/sentences.txt.part"
        exit 1
    fi
done
mv "$dir/eval.txt.part" "$dir/eval.txt"
mv "$dir/sentences.txt.part" "$dir/sentences.txt"
echo "fetch-eval-data: eval.txt and sentences.txt written to $dir"

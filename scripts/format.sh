#!/usr/bin/env bash
# Formats every Swift file of the project with swift-format (shipped with the Swift 6 toolchain)
# and the checked-in .swift-format; `--check` changes nothing and fails on any difference (CI).
set -euo pipefail
cd "$(dirname "$0")/.."
paths=(Package.swift Sources Tests Fuzz/Package.swift Fuzz/Sources)
if [ "${1:-}" = "--check" ]; then
    if ! out=$(swift format lint --strict --recursive --parallel "${paths[@]}" 2>&1) || [ -n "$out" ]; then
        printf '%s\n' "$out" | head -40
        echo "format: the files above differ from the house style; run scripts/format.sh" >&2
        exit 1
    fi
    echo "format: all Swift files follow .swift-format"
else
    swift format --in-place --recursive --parallel "${paths[@]}"
fi

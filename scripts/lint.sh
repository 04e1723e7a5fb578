#!/usr/bin/env bash
# House style: swift-format with the committed .swift-format, and no Swift line over 120 characters.
set -euo pipefail
cd "$(dirname "$0")/.."
swift format lint --strict --recursive Sources Tests Benchmarks Package.swift
long=$(git ls-files '*.swift' | xargs awk 'length > 120 { printf "%s:%d: %d characters\n", FILENAME, FNR, length }')
if [ -n "$long" ]; then
    echo "$long"
    echo "error: lines over 120 characters (break them; swift format does not split strings or comments)"
    exit 1
fi
echo "lint: clean"

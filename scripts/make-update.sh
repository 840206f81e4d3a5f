#!/usr/bin/env bash
# Builds a signed firmware update file from a build (see docs/image.md "Firmware updates").
#
#   scripts/make-update.sh [--version V] [--output FILE]
#
# Uses build/vmlinuz and build/initramfs.img from `make image`, and signs with
# TANDEM_SIGNING_KEY (default build/keys/signing.pk8, the development key `make image` made).
# The box checks the signature against the public key baked into its image.
set -euo pipefail
cd "$(dirname "$0")/.."
version=$(cat build/rootfs/etc/tandem/release 2>/dev/null || true)
output=
while [[ $# -gt 0 ]]; do
    case $1 in
        --version) version=$2; shift 2 ;;
        --output) output=$2; shift 2 ;;
        *) echo "usage: $0 [--version V] [--output FILE]" >&2; exit 2 ;;
    esac
done
[[ -n $version ]] || { echo "no version: run make image first, or give --version" >&2; exit 1; }
for f in build/tandemctl build/vmlinuz build/initramfs.img; do
    [[ -f $f ]] || { echo "$f is missing: run make image first" >&2; exit 1; }
done
key=${TANDEM_SIGNING_KEY:-build/keys/signing.pk8}
output=${output:-build/tandem-$version.update}
build/tandemctl firmware build --version "$version" --kernel build/vmlinuz \
    --initramfs build/initramfs.img --key "$key" --output "$output"

#!/usr/bin/env bash
# Installs the Debian packages `make image` (and with --vm, `make vm-pair`/`vm-test`) need,
# when missing. Debian's packages only; run as root.
set -euo pipefail
image_pkgs=(linux-image-amd64 busybox-static kmod grub-pc-bin grub-efi-amd64-bin grub-common
            dosfstools mtools e2fsprogs fdisk cpio zstd nftables)
vm_pkgs=(qemu-system-x86 ovmf iproute2 curl socat)
want=("${image_pkgs[@]}")
[[ "${1:-}" == "--vm" ]] && want+=("${vm_pkgs[@]}")

missing=()
for p in "${want[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[[ ${#missing[@]} -eq 0 ]] && exit 0
if [[ $(id -u) -ne 0 ]]; then
    echo "image/deps.sh: missing packages: ${missing[*]} (run as root, or install them)" >&2
    exit 1
fi
echo "image/deps.sh: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# qemu-system-x86 must match an installed qemu-utils from bookworm-backports (the machines
# here carry one): take it from backports when the plain install would conflict.
plain=() ; qemu=()
for p in "${missing[@]}"; do
    if [[ $p == qemu-system-x86 ]]; then qemu+=("$p"); else plain+=("$p"); fi
done
[[ ${#plain[@]} -gt 0 ]] && apt-get install -y -qq --no-install-recommends "${plain[@]}" >/dev/null
if [[ ${#qemu[@]} -gt 0 ]]; then
    if ! apt-get install -y -qq --no-install-recommends qemu-system-x86 >/dev/null 2>&1; then
        codename=$(. /etc/os-release && echo "$VERSION_CODENAME")
        src=/etc/apt/sources.list.d/tandem-${codename}-backports.sources
        if [[ ! -f $src ]]; then
            # The same mirror the machine already uses for its release.
            uri=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
            [[ -n $uri ]] || uri=$(awk '$1 == "deb" {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
            [[ -n $uri ]] || { echo "image/deps.sh: cannot find the Debian mirror in use" >&2; exit 1; }
            printf 'Types: deb\nURIs: %s\nSuites: %s-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
                "$uri" "$codename" > "$src"
            apt-get update -qq
        fi
        apt-get install -y -qq --no-install-recommends -t "${codename}-backports" qemu-system-x86 >/dev/null
    fi
fi

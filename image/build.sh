#!/usr/bin/env bash
# `make image`: builds build/tandem.img from Debian's kernel and busybox, the project's static
# binaries and buildroot-overlay/, without any network but Debian's packages, without loop
# devices or mounts. See docs/image.md.
#
# Environment:
#   TANDEM_SIGNING_KEY   the private key (PKCS#8) that signs slot A and the update file;
#                        default build/keys/signing.pk8, made on first use (a development key)
#   TANDEM_VERSION       the firmware version; default <workspace version>+g<commit>
#   CARGO_TARGET_DIR     where cargo builds (default: target)
#   KVER                 the Debian kernel to use; default the newest under /boot
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=$ROOT/build
TRIPLE=x86_64-unknown-linux-gnu
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=$TARGET_DIR/$TRIPLE/release

# Partition sizes in MiB: boot (GRUB), slot A, slot B, config. The first MiB holds the MBR
# and GRUB's core.img.
BOOT_MB=16
SLOT_MB=48
CONFIG_MB=64

step() { printf '\n== %s\n' "$*"; }

step "packages"
image/deps.sh

mkdir -p "$OUT"
step "static binaries"
RUSTFLAGS='-C target-feature=+crt-static' cargo build --release --target $TRIPLE -p tandem \
    --bin tandemd --bin tandemctl --bin tandem-setup
for b in tandemd tandemctl tandem-setup; do
    ldd "$BIN/$b" 2>&1 | grep -Eq "statically linked|not a dynamic executable" \
        || { echo "$b is not statically linked" >&2; exit 1; }
done
# The builder's own copy, for signing (scripts/make-update.sh, the VM tests).
install -m 0755 "$BIN/tandemctl" "$OUT/tandemctl"
TANDEMCTL=$OUT/tandemctl

KVER=${KVER:-$(ls /boot/vmlinuz-* | sed 's|/boot/vmlinuz-||' | sort -V | tail -1)}
VERSION=${TANDEM_VERSION:-$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)+g$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}
echo "kernel $KVER, firmware $VERSION"

step "signing key"
KEY=${TANDEM_SIGNING_KEY:-$OUT/keys/signing.pk8}
if [[ ! -f $KEY ]]; then
    if [[ -n ${TANDEM_SIGNING_KEY:-} ]]; then echo "TANDEM_SIGNING_KEY=$KEY does not exist" >&2; exit 1; fi
    "$TANDEMCTL" firmware keygen --out-dir "$OUT/keys"
    echo "made a DEVELOPMENT signing key: keep $KEY to sign updates for this image"
fi
PUB=$("$TANDEMCTL" firmware pubkey --key "$KEY")

step "root file system"
RFS=$OUT/rootfs
rm -rf "$RFS"
mkdir -p "$RFS"/{bin,sbin,usr/bin,usr/sbin,usr/lib,lib,proc,sys,dev,run,tmp,config,var,root,etc/tandem}
ln -s ../run "$RFS/var/run"
cp /bin/busybox "$RFS/bin/busybox"
for applet in $(/bin/busybox --list-full); do
    [[ -e $RFS/$applet ]] || ln -s /bin/busybox "$RFS/$applet"
done
ln -sf bin/busybox "$RFS/init"
cp -a buildroot-overlay/. "$RFS/"
install -m 0755 "$BIN/tandemd" "$BIN/tandem-setup" "$RFS/usr/sbin/"
strip "$RFS/usr/sbin/tandemd" "$RFS/usr/sbin/tandem-setup"
# tandem-setup is tandemctl too when called by that name (one copy of the shared code).
ln -s tandem-setup "$RFS/usr/sbin/tandemctl"
echo "$VERSION" > "$RFS/etc/tandem/release"
echo "$PUB" > "$RFS/etc/tandem/firmware-signing.pub"

# nft is dynamically linked: bring it with the libraries it loads and the dynamic loader.
cp /usr/sbin/nft "$RFS/usr/sbin/nft"
for lib in $(ldd /usr/sbin/nft | awk '/=>/ {print $3} /ld-linux/ {print $1}'); do
    mkdir -p "$RFS$(dirname "$lib")"
    cp -L "$lib" "$RFS$lib"
done
mkdir -p "$RFS/lib64"
[[ -e $RFS/lib64/ld-linux-x86-64.so.2 ]] || cp -L /lib64/ld-linux-x86-64.so.2 "$RFS/lib64/"
strip "$RFS/usr/sbin/nft" 2>/dev/null || true

# Kernel modules: the ones listed (with their dependencies), then depmod for the set.
MODS=(virtio_pci virtio_blk virtio_net virtio_console ahci sd_mod nvme e1000 e1000e igb ixgbe
      ext4 vfat nls_cp437 nls_ascii nf_tables nf_conntrack nft_ct nft_limit nft_reject_inet
      nft_fib_inet i6300esb bonding macvlan 8021q)
for m in "${MODS[@]}"; do
    modprobe -S "$KVER" --show-depends "$m" 2>/dev/null | awk '$1 == "insmod" {print $2}'
done | sort -u | while read -r ko; do
    mkdir -p "$RFS$(dirname "$ko")"
    cp "$ko" "$RFS$ko"
done
cp /lib/modules/"$KVER"/modules.{order,builtin,builtin.modinfo} "$RFS/lib/modules/$KVER/" 2>/dev/null || true
depmod -b "$RFS" "$KVER"

step "initramfs"
(cd "$RFS" && find . -print0 | LC_ALL=C sort -z \
    | cpio --null --create --format=newc --owner=0:0 --reproducible --quiet) \
    | zstd -19 -T0 -q -f -o "$OUT/initramfs.img"
cp "/boot/vmlinuz-$KVER" "$OUT/vmlinuz"

step "signed update file and slot A's manifest"
rm -rf "$OUT/slot-meta"
"$TANDEMCTL" firmware build --version "$VERSION" --kernel "$OUT/vmlinuz" \
    --initramfs "$OUT/initramfs.img" --key "$KEY" --output "$OUT/tandem-$VERSION.update" \
    --slot-dir "$OUT/slot-meta"
ln -sf "tandem-$VERSION.update" "$OUT/tandem.update"

step "partitions"
PARTS=$OUT/parts
rm -rf "$PARTS"; mkdir -p "$PARTS"
grub-editenv "$PARTS/grubenv" create
grub-editenv "$PARTS/grubenv" set confirmed=A
GRUB_MODS="part_msdos fat normal configfile linux echo test regexp loadenv serial terminal sleep reboot halt boot"
grub-mkimage -O i386-pc -p '(,msdos1)/grub' -o "$PARTS/core.img" biosdisk $GRUB_MODS
grub-mkimage -O x86_64-efi -p '(,msdos1)/grub' -o "$PARTS/BOOTX64.EFI" efi_gop $GRUB_MODS
# The boot partition: grub.cfg, grubenv, the UEFI loader.
mkfs.vfat -C -n TANDEM_BOOT "$PARTS/boot.img" $((BOOT_MB * 1024)) >/dev/null
mmd -i "$PARTS/boot.img" ::/grub ::/EFI ::/EFI/BOOT
mcopy -i "$PARTS/boot.img" image/grub.cfg "$PARTS/grubenv" ::/grub/
mcopy -i "$PARTS/boot.img" "$PARTS/BOOTX64.EFI" ::/EFI/BOOT/
# Slot A holds this build; slot B starts empty (an update fills it).
# 32 KiB clusters: GRUB reads the kernel and initramfs in fewer, larger pieces (the box
# formats a slot the same way, firmware/slot.rs).
mkfs.vfat -C -s 64 -n TANDEM_A "$PARTS/slot-a.img" $((SLOT_MB * 1024)) >/dev/null
mcopy -i "$PARTS/slot-a.img" "$OUT/vmlinuz" "$OUT/initramfs.img" \
    "$OUT/slot-meta/manifest.json" "$OUT/slot-meta/manifest.sig" ::/
mkfs.vfat -C -s 64 -n TANDEM_B "$PARTS/slot-b.img" $((SLOT_MB * 1024)) >/dev/null
# The config partition starts empty: the first boot runs the wizard.
mkdir -p "$PARTS/config-root"
mkfs.ext4 -q -F -L TANDEM_CONFIG -d "$PARTS/config-root" -E root_owner=0:0 \
    "$PARTS/config.img" ${CONFIG_MB}M

step "disk image"
IMG=$OUT/tandem.img
TOTAL_MB=$((1 + BOOT_MB + 2 * SLOT_MB + CONFIG_MB))
rm -f "$IMG"
truncate -s ${TOTAL_MB}M "$IMG"
MB=2048 # sectors
sfdisk --quiet "$IMG" <<PT
label: dos
unit: sectors
start=$((1 * MB)), size=$((BOOT_MB * MB)), type=ef, bootable
start=$(((1 + BOOT_MB) * MB)), size=$((SLOT_MB * MB)), type=c
start=$(((1 + BOOT_MB + SLOT_MB) * MB)), size=$((SLOT_MB * MB)), type=c
start=$(((1 + BOOT_MB + 2 * SLOT_MB) * MB)), size=$((CONFIG_MB * MB)), type=83
PT
put() { dd if="$1" of="$IMG" bs=1M seek="$2" conv=notrunc,sparse status=none; }
put "$PARTS/boot.img" 1
put "$PARTS/slot-a.img" $((1 + BOOT_MB))
put "$PARTS/slot-b.img" $((1 + BOOT_MB + SLOT_MB))
put "$PARTS/config.img" $((1 + BOOT_MB + 2 * SLOT_MB))
# GRUB for BIOS: boot.img's code into the MBR (not the partition table), core.img after it.
dd if=/usr/lib/grub/i386-pc/boot.img of="$IMG" bs=440 count=1 conv=notrunc status=none
CORE_SECTORS=$(( ($(stat -c %s "$PARTS/core.img") + 511) / 512 ))
[[ $CORE_SECTORS -lt 2047 ]] || { echo "core.img does not fit before the first partition" >&2; exit 1; }
dd if="$PARTS/core.img" of="$IMG" bs=512 seek=1 conv=notrunc status=none

DATA=$(du -B1 "$IMG" | cut -f1)
printf '\n%s: %d MiB disk, %.1f MiB of data; kernel %d KiB, initramfs %d KiB; update %s\n' \
    "$IMG" $TOTAL_MB "$(awk "BEGIN {print $DATA / 1048576}")" \
    $(( $(stat -c %s "$OUT/vmlinuz") / 1024 )) $(( $(stat -c %s "$OUT/initramfs.img") / 1024 )) \
    "$OUT/tandem.update"

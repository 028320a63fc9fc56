#!/bin/sh
# Rebuilds the example tree under images/: a flashlayout and small stand-in
# binaries laid out as ST's starter package ships them (the layout in
# flashlayout_<image>/<bootscheme>/, the binaries two levels up). The TF-A
# images get a real STM32 header (U-Boot's `mkimage -T stm32image`, as ST
# documents), the FIPs a FIP table-of-contents magic; the file systems are
# a few KiB of filler, not real ext4. The output is committed; run this
# only to change it.
set -eu
cd "$(dirname "$0")"
base=images/stm32mp1
rm -rf "$base"
mkdir -p "$base/arm-trusted-firmware" "$base/fip" "$base/flashlayout_st-image-weston/optee"

# filler NAME BYTES: deterministic non-zero bytes (the name repeated).
filler() {
    yes "$1" | tr '\n' ' ' | head -c "$2"
}

for t in usb sdcard; do
    filler "tf-a $t" 8000 > tfa.payload
    mkimage -T stm32image -a 0x2FFC2500 -e 0x2FFC2500 -d tfa.payload \
        "$base/arm-trusted-firmware/tf-a-stm32mp157f-dk2-$t.stm32" > /dev/null
    # FIP: TOC_HEADER_NAME 0xAA640001, little-endian, then the body.
    { printf '\001\000\144\252'; filler "fip $t" 16000; } \
        > "$base/fip/fip-stm32mp157f-dk2-optee-$t.bin"
done
rm -f tfa.payload
filler "fwu metadata" 512 > "$base/arm-trusted-firmware/metadata.bin"
for fs in bootfs vendorfs userfs; do
    filler "$fs" 4096 > "$base/st-image-$fs-openstlinux-weston-stm32mp1.ext4"
done
filler "rootfs" 6000 > "$base/st-image-weston-openstlinux-weston-stm32mp1.ext4"

printf '%s\n' \
'#Opt	Id	Name	Type	IP	Offset	Binary' \
'-	0x01	fsbl-boot	Binary	none	0x0	arm-trusted-firmware/tf-a-stm32mp157f-dk2-usb.stm32' \
'-	0x03	fip-boot	FIP	none	0x0	fip/fip-stm32mp157f-dk2-optee-usb.bin' \
'P	0x04	fsbl1	Binary	mmc0	0x00004400	arm-trusted-firmware/tf-a-stm32mp157f-dk2-sdcard.stm32' \
'P	0x05	fsbl2	Binary	mmc0	0x00044400	arm-trusted-firmware/tf-a-stm32mp157f-dk2-sdcard.stm32' \
'P	0x06	metadata1	FWU_MDATA	mmc0	0x00084400	arm-trusted-firmware/metadata.bin' \
'P	0x07	metadata2	FWU_MDATA	mmc0	0x000C4400	arm-trusted-firmware/metadata.bin' \
'P	0x08	fip-a	FIP	mmc0	0x00104400	fip/fip-stm32mp157f-dk2-optee-sdcard.bin' \
'PED	0x09	fip-b	FIP	mmc0	0x00504400	none' \
'PED	0x0A	u-boot-env	ENV	mmc0	0x00904400	none' \
'P	0x10	bootfs	System	mmc0	0x00984400	st-image-bootfs-openstlinux-weston-stm32mp1.ext4' \
'P	0x11	vendorfs	FileSystem	mmc0	0x04984400	st-image-vendorfs-openstlinux-weston-stm32mp1.ext4' \
'P	0x12	rootfs	FileSystem	mmc0	0x05984400	st-image-weston-openstlinux-weston-stm32mp1.ext4' \
'P	0x13	userfs	FileSystem	mmc0	0x105984400	st-image-userfs-openstlinux-weston-stm32mp1.ext4' \
    > "$base/flashlayout_st-image-weston/optee/FlashLayout_sdcard_stm32mp157f-dk2-optee.tsv"

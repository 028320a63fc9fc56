//! A sample eMMC flashlayout with synthetic binaries, shaped like an
//! OpenSTLinux build for the EV1 (TF-A ~230 KiB, FIP ~1.1 MiB, a 16 MiB
//! bootfs), for the demo and the benchmark.

use dfukit_core::synthetic;
use dfukit_stm32mp::image::{self, WriteParams};
use dfukit_stm32mp::phase::FIP_TOC_HEADER;
use std::io;
use std::path::{Path, PathBuf};

/// Where the sample layout puts the rootfs on the eMMC user area, unless
/// the bootfs reaches past it.
const ROOTFS_OFFSET: u64 = 0x0280_0000;
/// File name of the sample's rootfs image.
pub const ROOTFS_FILE: &str = "rootfs.ext4";

fn data(seed: u32, len: usize) -> Vec<u8> {
    synthetic::bytes(seed).take(len).collect()
}

/// Writes `FlashLayout_emmc.tsv` and its binaries into `dir`: the USB
/// TF-A and FIP loaded to RAM, the eMMC TF-A in boot1 and boot2, the FIP,
/// a bootfs of `bootfs_len` bytes and a rootfs of `rootfs_len` bytes, and an
/// empty userfs after it. Returns the layout's path and the rootfs offset.
pub fn write_emmc_layout(
    dir: &Path,
    bootfs_len: usize,
    rootfs_len: usize,
) -> io::Result<(PathBuf, u64)> {
    let mut fip = FIP_TOC_HEADER.to_le_bytes().to_vec();
    fip.extend(data(3, (1 << 20) + 123 * 1024));
    let files: [(&str, Vec<u8>); 5] = [
        (
            "tf-a-usb.stm32",
            image::write(&WriteParams::v1(0x2FFC_2500), &data(1, 230 * 1024)),
        ),
        (
            "tf-a-emmc.stm32",
            image::write(&WriteParams::v1(0x2FFC_2500), &data(2, 230 * 1024)),
        ),
        ("fip.bin", fip),
        ("bootfs.ext4", data(4, bootfs_len)),
        (ROOTFS_FILE, data(5, rootfs_len)),
    ];
    for (name, bytes) in &files {
        std::fs::write(dir.join(name), bytes)?;
    }
    let bootfs_end = (0x0080_0000 + bootfs_len as u64).next_multiple_of(1 << 20);
    let rootfs_offset = ROOTFS_OFFSET.max(bootfs_end);
    // userfs is created empty (E): the rootfs needs a next row to end at.
    let userfs = (rootfs_offset + rootfs_len as u64 + (1 << 20)).next_multiple_of(1 << 20);
    let tsv = format!(
        "#Opt\tId\tName\tType\tIP\tOffset\tBinary
-\t0x01\tfsbl-boot\tBinary\tnone\t0x0\ttf-a-usb.stm32
-\t0x03\tfip-boot\tFIP\tnone\t0x0\tfip.bin
P\t0x04\tfsbl1\tBinary\tmmc1\tboot1\ttf-a-emmc.stm32
P\t0x05\tfsbl2\tBinary\tmmc1\tboot2\ttf-a-emmc.stm32
P\t0x08\tfip-a\tFIP\tmmc1\t0x00080000\tfip.bin
P\t0x10\tbootfs\tSystem\tmmc1\t0x00800000\tbootfs.ext4
P\t0x12\trootfs\tFileSystem\tmmc1\t{rootfs_offset:#010x}\t{ROOTFS_FILE}
PE\t0x13\tuserfs\tFileSystem\tmmc1\t{userfs:#010x}\tnone
"
    );
    let path = dir.join("FlashLayout_emmc.tsv");
    std::fs::write(&path, tsv)?;
    Ok((path, rootfs_offset))
}

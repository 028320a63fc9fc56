//! ELF executables: loadable segments by physical (load) address.

use crate::FirmwareError;
use std::path::Path;

/// The `PT_LOAD` segments with file data, each at its physical address (where it sits in
/// flash; the virtual address of `.data` is its RAM copy).
pub fn parse_elf(path: &Path, data: &[u8]) -> Result<Vec<(u32, Vec<u8>)>, FirmwareError> {
    use object::elf::{FileHeader32, PT_LOAD};
    use object::read::elf::{FileHeader, ProgramHeader};
    use object::Endianness;
    let err = |e: object::Error| FirmwareError::Elf {
        path: path.to_owned(),
        reason: e.to_string(),
    };
    check_machine(path, data)?;
    let header = FileHeader32::<Endianness>::parse(data).map_err(err)?;
    let endian = header.endian().map_err(err)?;
    let mut chunks = Vec::new();
    for ph in header.program_headers(endian, data).map_err(err)? {
        if ph.p_type(endian) != PT_LOAD || ph.p_filesz(endian) == 0 {
            continue;
        }
        let bytes = ph.data(endian, data).map_err(|()| FirmwareError::Elf {
            path: path.to_owned(),
            reason: format!(
                "segment at {:#010x} lies outside the file",
                ph.p_paddr(endian)
            ),
        })?;
        chunks.push((ph.p_paddr(endian), bytes.to_vec()));
    }
    Ok(chunks)
}

/// Refuses an ELF that is not 32-bit little-endian ARM before its segments are read: an
/// x86 or RISC-V build's "segments" are no firmware for this device.
fn check_machine(path: &Path, data: &[u8]) -> Result<(), FirmwareError> {
    const EM_ARM: u16 = 40;
    let (Some(&class), Some(&order), Some(m)) = (data.get(4), data.get(5), data.get(18..20)) else {
        return Ok(()); // too short: the parser names what is missing
    };
    let machine = match order {
        2 => u16::from_be_bytes([m[0], m[1]]),
        _ => u16::from_le_bytes([m[0], m[1]]),
    };
    if class == 1 && order == 1 && machine == EM_ARM {
        return Ok(());
    }
    let name = match machine {
        3 => "EM_386",
        8 => "EM_MIPS",
        40 => "EM_ARM",
        62 => "EM_X86_64",
        94 => "EM_XTENSA",
        183 => "EM_AARCH64",
        243 => "EM_RISCV",
        _ => "machine",
    };
    let bits = match class {
        1 => "32-bit",
        2 => "64-bit",
        _ => "unknown-class",
    };
    let endian = match order {
        1 => "little-endian",
        2 => "big-endian",
        _ => "unknown-byte-order",
    };
    Err(FirmwareError::ElfMachine {
        path: path.to_owned(),
        found: format!("{name} ({machine}), {bits} {endian}"),
    })
}

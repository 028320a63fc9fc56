use super::*;

fn elf32(class: u8, data: u8, machine: u16) -> Vec<u8> {
    // Minimal ELF32 with one PT_LOAD segment (vaddr 0x20000000, paddr 0x27000).
    let mut elf = vec![0u8; 52 + 32];
    elf[..4].copy_from_slice(b"\x7fELF");
    elf[4] = class;
    elf[5] = data;
    elf[6] = 1;
    elf[16..18].copy_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    elf[18..20].copy_from_slice(&machine.to_le_bytes());
    elf[20..24].copy_from_slice(&1u32.to_le_bytes());
    elf[28..32].copy_from_slice(&52u32.to_le_bytes()); // e_phoff
    elf[40..42].copy_from_slice(&52u16.to_le_bytes()); // e_ehsize
    elf[42..44].copy_from_slice(&32u16.to_le_bytes()); // e_phentsize
    elf[44..46].copy_from_slice(&1u16.to_le_bytes()); // e_phnum
    let ph = 52;
    elf[ph..ph + 4].copy_from_slice(&1u32.to_le_bytes()); // PT_LOAD
    elf[ph + 4..ph + 8].copy_from_slice(&84u32.to_le_bytes()); // p_offset
    elf[ph + 8..ph + 12].copy_from_slice(&0x2000_0000u32.to_le_bytes());
    elf[ph + 12..ph + 16].copy_from_slice(&0x27000u32.to_le_bytes());
    elf[ph + 16..ph + 20].copy_from_slice(&6u32.to_le_bytes());
    elf[ph + 20..ph + 24].copy_from_slice(&6u32.to_le_bytes());
    elf.extend_from_slice(&[1, 2, 3, 4, 5, 6]);
    elf
}

#[test]
fn bad_record_names_line() {
    let text = ":020000040002F8\n:10000000ZZ\n";
    let e = segments(Path::new("bad.hex"), text.as_bytes()).unwrap_err();
    assert!(matches!(e, FirmwareError::HexRecord { line: 2, .. }));
    assert!(e.to_string().starts_with("bad.hex:2:"), "{e}");
    let text = ":0400000001020304F2\n:0400020001020304F0\n:00000001FF\n";
    assert!(matches!(
        segments(Path::new("o.hex"), text.as_bytes()),
        Err(FirmwareError::Overlap { address: 2, .. })
    ));
    assert!(matches!(
        segments(Path::new("e.hex"), b":00000001FF\n"),
        Err(FirmwareError::Empty { .. })
    ));
}

#[test]
fn hex_without_eof_record_is_refused_with_its_last_line() {
    let full = to_intel_hex(&[(0x27000, &[0xA5; 40])]);
    let truncated: String = full.lines().take(3).map(|l| format!("{l}\n")).collect();
    let e = segments(Path::new("cut.hex"), truncated.as_bytes()).unwrap_err();
    let msg = e.to_string();
    assert!(msg.starts_with("cut.hex:3:"), "{msg}");
    assert!(msg.contains("end-of-file record"), "{msg}");
    assert_eq!(e.code(), "dfukit::firmware::hex_truncated");
    // The whole file, with its EOF record and a trailing blank line, loads.
    let whole = format!("{full}\n");
    assert_eq!(
        segments(Path::new("ok.hex"), whole.as_bytes()).unwrap()[0]
            .1
            .len(),
        40
    );
}

#[test]
fn records_after_eof_are_refused_with_their_line() {
    let full = to_intel_hex(&[(0x1000, &[1, 2, 3, 4])]);
    let text = format!("{full}:0400100001020304E2\n");
    let e = segments(Path::new("two.hex"), text.as_bytes()).unwrap_err();
    let msg = e.to_string();
    assert!(msg.starts_with("two.hex:3:"), "{msg}");
    assert!(
        msg.contains("after the end-of-file record on line 2"),
        "{msg}"
    );
    assert_eq!(e.code(), "dfukit::firmware::hex_after_eof");
}

#[test]
fn a_flat_image_spanning_more_than_16_mib_is_refused_naming_both_addresses() {
    let text = to_intel_hex(&[(0x27000, &[1; 16]), (0x0FFF_FFF0, &[2; 16])]);
    let segs = segments(Path::new("gap.hex"), text.as_bytes()).unwrap();
    // Callers that write several regions still get both.
    assert_eq!(segs.len(), 2);
    assert_eq!((segs[0].0, segs[1].0), (0x27000, 0x0FFF_FFF0));
    let e = load_flat(Path::new("gap.hex"), text.as_bytes()).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("0x00027000") && msg.contains("0x0ffffff0"),
        "{msg}"
    );
    assert!(msg.contains("16 MiB"), "{msg}");
    assert_eq!(e.code(), "dfukit::firmware::span");
    // Exactly the limit is allowed.
    let text = to_intel_hex(&[(0x0800_0000, &[1; 16]), (0x0900_0000 - 16, &[2; 16])]);
    let img = load_flat(Path::new("ok.hex"), text.as_bytes()).unwrap();
    assert_eq!(img.data.len(), MAX_FLAT_SPAN as usize);
}

#[test]
fn elf_for_another_machine_is_refused_naming_it() {
    for (class, data, machine, named) in [
        (1, 1, 62, "EM_X86_64 (62)"),
        (1, 1, 243, "EM_RISCV (243)"),
        (2, 1, 183, "64-bit"),
        (1, 2, 40, "big-endian"),
    ] {
        let e = segments(Path::new("x.elf"), &elf32(class, data, machine)).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains(named), "{named}: {msg}");
        assert!(msg.contains("EM_ARM"), "{msg}");
        assert_eq!(e.code(), "dfukit::firmware::elf_machine", "{msg}");
    }
}

#[test]
fn elf_segments_by_physical_address() {
    let segs = segments(Path::new("app.elf"), &elf32(1, 1, 40)).unwrap();
    assert_eq!(segs, vec![(0x27000, vec![1, 2, 3, 4, 5, 6])]);
    assert!(matches!(
        segments(Path::new("x.elf"), b"\x7fELF\x01\x01junk"),
        Err(FirmwareError::Elf { .. })
    ));
}

#[test]
fn touching_records_merge_and_gaps_fill_with_ff() {
    let text = to_intel_hex(&[(0x27000, &[1, 2, 3]), (0x27003, &[4]), (0x27008, &[9])]);
    let segs = segments(Path::new("app.hex"), text.as_bytes()).unwrap();
    assert_eq!(segs, vec![(0x27000, vec![1, 2, 3, 4]), (0x27008, vec![9])]);
    let img = load_flat(Path::new("app.hex"), text.as_bytes()).unwrap();
    assert_eq!(img.start_address, 0x27000);
    assert_eq!(img.data, vec![1, 2, 3, 4, 0xFF, 0xFF, 0xFF, 0xFF, 9]);
}

#[test]
fn bin_is_one_segment_at_zero() {
    assert_eq!(
        segments(Path::new("x.bin"), &[1, 2, 3]).unwrap(),
        vec![(0, vec![1, 2, 3])]
    );
    assert!(matches!(
        segments(Path::new("x.bin"), &[]),
        Err(FirmwareError::Empty { .. })
    ));
}

#[test]
fn intel_hex_writer_round_trips() {
    let data: Vec<u8> = (0..100u8).collect();
    let text = to_intel_hex(&[(0xFFF0, &data)]);
    assert!(text.starts_with(":020000040000FA\n"));
    assert!(text.ends_with(":00000001FF\n"));
    let chunks = parse_hex(Path::new("t.hex"), &text).unwrap();
    let flat: Vec<u8> = chunks.iter().flat_map(|c| c.1.clone()).collect();
    assert_eq!(flat, data);
    assert_eq!(chunks[1].0, 0x10000);
}

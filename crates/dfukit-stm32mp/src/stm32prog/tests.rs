//! The device core's U-Boot rules, each next to what the host's checker
//! ([`crate::layout`]) says about the same input, where the two differ.
//! Citations are to U-Boot's `arch/arm/mach-stm32mp/cmd_stm32prog/
//! stm32prog.c` (`parse_flash_layout` and its column parsers,
//! `treat_partition_list`, `init_device`) and `lib/strto.c`.

use super::*;
use crate::layout::{self, CheckOptions, DeviceGeometry, Ip, IpKind};
use std::collections::BTreeMap;
use std::path::Path;

const HEAD: &str = "#Opt\tId\tName\tType\tIP\tOffset\tBinary\n";

fn uboot(text: &str) -> Result<FlashLayout, String> {
    parse_flash_layout(text.as_bytes()).map_err(|e| e.to_string())
}

/// U-Boot refuses `text` with exactly `message`.
#[track_caller]
fn refused(text: &str, message: &str) {
    assert_eq!(uboot(text).unwrap_err(), message);
}

fn host_accepts(bytes: &[u8]) -> bool {
    layout::parse_bytes(bytes, Path::new("t.tsv")).is_ok()
}

fn only_row(l: &FlashLayout) -> &UbootPartition {
    assert_eq!(l.rows.len(), 1, "{l:?}");
    &l.rows[0]
}

/// `parse_flash_layout` replaces a CR by a NUL, so `strlen` ends the
/// column there: what follows a CR in a column is ignored. The host takes
/// the name with the CR in it as it is and refuses it.
#[test]
fn cr_ends_its_column() {
    let text = format!("{HEAD}P\t0x10\tboot\rjunk\tSystem\tmmc0\t0x4400\tb\r\n");
    let l = uboot(&text).unwrap();
    assert!(only_row(&l).name.is("boot"));
    let host = layout::parse_bytes(text.as_bytes(), Path::new("t.tsv"));
    assert!(host.map_or(true, |h| h.partitions[0].name != "boot"));
}

/// An empty column before the newline leaves U-Boot's `end_of_line` set
/// without ending the row (empty columns are skipped with `continue`), so
/// the next line's first column is one more column of this row and the
/// line after is parsed one column off. The host ignores trailing TABs.
#[test]
fn trailing_tab_swallows_the_next_lines_first_column() {
    let text = format!(
        "{HEAD}P\t0x10\ta\tSystem\tmmc0\t0x4400\ta\t\nP\t0x11\tb\tSystem\tmmc0\t0x8400\tb\n"
    );
    refused(&text, "Layout line 3: invalid option '0' in 0x11)");
    assert!(host_accepts(text.as_bytes()));
}

/// The same at the end of the file: the loop ends with the row pending
/// and `part_nb` never counts it, so the layout has no partition.
#[test]
fn trailing_tab_on_the_last_line_drops_the_row() {
    let text = format!("{HEAD}P\t0x10\ta\tSystem\tmmc0\t0x4400\ta\t\n");
    refused(&text, "Layout: no partition found");
    assert!(host_accepts(text.as_bytes()));
}

/// Several TABs between columns are one separator ("skip empty line and
/// multiple TAB in tsv file"), as the host also takes them.
#[test]
fn several_tabs_separate_one_column() {
    let text = format!("{HEAD}P\t\t0x10\tboot\t\tSystem\tmmc0\t0x4400\tb\n");
    let l = uboot(&text).unwrap();
    let p = only_row(&l);
    assert_eq!((p.id, p.kind), (0x10, PartKind::System));
    assert!(host_accepts(text.as_bytes()));
}

/// `parse_id` uses `strict_strtoul(p, 0, ..)`: a leading 0 is octal (as
/// the host reads it too), and the 32-bit `unsigned long` of ARMv7 wraps,
/// where the host refuses the value.
#[test]
fn ids_are_read_as_c_numbers_wrapping_at_32_bits() {
    let row = |id: &str| format!("{HEAD}P\t{id}\tb\tSystem\tmmc0\t0x4400\tb\n");
    assert_eq!(only_row(&uboot(&row("020")).unwrap()).id, 0x10);
    assert_eq!(only_row(&uboot(&row("0x100000010")).unwrap()).id, 0x10);
    assert!(!host_accepts(row("0x100000010").as_bytes()));
    // `0x` alone: digits were read (the prefix), nothing follows.
    let none = format!("{HEAD}-\t0x\tb\tBinary\tnone\t0x0\tb\n");
    assert_eq!(only_row(&uboot(&none).unwrap()).id, 0);
    refused(&row("0xF1"), "Layout line 2: invalid phase value = 0xF1");
}

/// `parse_offset` uses `simple_strtoull(p, &tail, 10)`: decimal unless
/// `0x`, a leading 0 is not octal (the host agrees).
#[test]
fn offsets_may_be_decimal() {
    let text = format!("{HEAD}P\t0x10\tb\tSystem\tmmc0\t017408\tb\n");
    let p = only_row(&uboot(&text).unwrap()).clone();
    assert_eq!(p.placement, Placement::Address(0x4400));
    assert!(host_accepts(text.as_bytes()));
    let bad = format!("{HEAD}P\t0x10\tb\tSystem\tmmc0\t0x44g0\tb\n");
    refused(&bad, "Layout line 2: invalid offset '0x44g0'");
}

/// `parse_type` reads N of `Binary(N)` with `dectoul`, which stops at the
/// first non-digit; only "Binary(" and "Binaryx…" are refused. The host
/// wants a number between the parentheses.
#[test]
fn binary_n_is_read_leniently() {
    let row = |t: &str| format!("{HEAD}P\t0x04\tfsbl1\t{t}\tnand0\t0x0\tb\n");
    assert_eq!(only_row(&uboot(&row("Binary(2x)")).unwrap()).copies, 2);
    assert_eq!(only_row(&uboot(&row("Binary()")).unwrap()).copies, 0);
    assert!(!host_accepts(row("Binary(2x)").as_bytes()));
    assert!(!host_accepts(row("Binary()").as_bytes()));
    refused(
        &row("Binary("),
        "Layout line 2: type parsing error : 'Binary('",
    );
}

/// `parse_ip` takes anything starting with "ram" as RAM (`len = 0`: no
/// digit expected); the host knows `ram` only as `ram0`-style names or not
/// at all.
#[test]
fn any_ram_prefix_is_ram() {
    let text = format!("{HEAD}P\t0x10\tkernel\tSystem\tramdisk\t0xC2000000\tb\n");
    let p = only_row(&uboot(&text).unwrap()).clone();
    assert_eq!(p.medium.medium, Medium::Ram);
    assert!(!host_accepts(text.as_bytes()));
    let two_digits = format!("{HEAD}P\t0x10\tb\tSystem\tmmc10\t0x4400\tb\n");
    refused(&two_digits, "Layout line 2: ip parsing error: 'mmc10'");
}

/// `#` starts a comment only where a line's first column starts (after
/// any TABs); elsewhere it is data. The first error is the only one,
/// with U-Boot's wording (its stray parenthesis included).
#[test]
fn hash_is_a_comment_only_at_the_start_of_a_line() {
    let text = format!("{HEAD}\t# a comment after a TAB\nP\t0x10\tb\tSystem\tmmc0\t0x4400\tb\n");
    assert_eq!(only_row(&uboot(&text).unwrap()).line, 3);
    let text = format!("{HEAD}P#\t0x10\tb\tSystem\tmmc0\t0x4400\tb\n");
    refused(&text, "Layout line 2: invalid option '#' in P#)");
}

/// `*last = 0x0` and the `'\0'` case: the text ends at the first NUL. The
/// host refuses the NUL as a character of the layout.
#[test]
fn text_ends_at_a_nul() {
    let mut bytes = format!("{HEAD}P\t0x10\tb\tSystem\tmmc0\t0x4400\tb\n").into_bytes();
    bytes.push(0);
    bytes.extend_from_slice(b"garbage that U-Boot never reads\n");
    let l = parse_flash_layout(&bytes).unwrap();
    assert_eq!(l.rows.len(), 1);
    assert!(!host_accepts(&bytes));
    assert_eq!(
        parse_flash_layout(b"").unwrap_err().as_str(),
        "Layout: invalid FlashLayout"
    );
}

/// `parse_flash_layout` unwraps `HEADER_STM32IMAGE` (v1) only; a v2
/// header is read as text, whose first column then starts with "STM2".
/// The host unwraps v2 as well.
#[test]
fn only_a_v1_header_is_unwrapped() {
    use crate::image::{write, WriteParams};
    let text = format!("{HEAD}P\t0x10\tb\tSystem\tmmc0\t0x4400\tb\n");
    let v1 = write(&WriteParams::v1(UBOOT_LOAD_ADDR), text.as_bytes());
    assert_eq!(parse_flash_layout(&v1).unwrap().rows.len(), 1);
    let v2 = write(&WriteParams::v2(UBOOT_LOAD_ADDR), text.as_bytes());
    let e = parse_flash_layout(&v2).unwrap_err();
    assert!(
        e.as_str().starts_with("Layout line 1: invalid option 'S'"),
        "{e}"
    );
    assert!(host_accepts(&v2));
    // U-Boot's header test wants reserved words zero; otherwise the bytes
    // are text too.
    let mut odd = v1.clone();
    odd[0x54] = 1;
    assert!(parse_flash_layout(&odd).is_err());
}

/// A board with the devices the table tests need, recording requests.
#[derive(Default)]
struct Board {
    geometry: BTreeMap<(u8, u8), Geometry>,
    ram: Vec<u8>,
    erased: Vec<String>,
    /// Entry names of each GPT written.
    gpt: Vec<Vec<String>>,
    written: Vec<(u8, u64, usize)>,
    log: Vec<String>,
}

fn key(m: MediumId) -> (u8, u8) {
    (m.medium as u8, m.instance)
}

impl Board {
    fn with_emmc() -> Self {
        let mut b = Board::default();
        let m = MediumId {
            medium: Medium::Mmc,
            instance: 1,
        };
        b.geometry.insert(
            key(m),
            Geometry::Mmc {
                block_size: 512,
                blocks: (64 << 20) / 512,
                erase_group_blocks: 1024,
                boot_size: 1 << 20,
            },
        );
        b
    }
}

impl Stm32mpBoard for Board {
    type Error = String;
    fn ram_write(&mut self, offset: u64, data: &[u8]) {
        self.ram.truncate(offset as usize);
        self.ram.extend_from_slice(data);
    }
    fn ram(&self) -> &[u8] {
        &self.ram
    }
    fn fsbl_start_delay(&self) -> Duration {
        Duration::from_millis(100)
    }
    fn geometry(&self, m: MediumId) -> Option<Geometry> {
        self.geometry.get(&key(m)).copied()
    }
    fn existing_partition(&mut self, _: MediumId, _: u16) -> ExistingPartition {
        ExistingPartition::Missing
    }
    fn erase(&mut self, p: &UbootPartition) -> BoardResult<Duration, String> {
        self.erased.push(p.name.to_string());
        Ok(Duration::from_millis(1))
    }
    fn write_gpt(&mut self, _: MediumId, entries: &[GptPartition<'_>]) -> Result<(), String> {
        let names = entries.iter().map(|e| e.partition.name.to_string());
        self.gpt.push(names.collect());
        Ok(())
    }
    fn begin_download(&mut self, _: &UbootPartition) {}
    fn write(&mut self, p: &UbootPartition, at: u64, data: &[u8]) -> BoardResult<Duration, String> {
        self.written.push((p.id, at, data.len()));
        Ok(Duration::ZERO)
    }
    fn end_download(&mut self, _: &UbootPartition) -> BoardResult<Duration, String> {
        Ok(Duration::ZERO)
    }
    fn copy_image(&mut self, _: &UbootPartition, _: u64, _: u64) -> BoardResult<Duration, String> {
        Err(BoardStorageError::Absent)
    }
    fn read(&mut self, _: &UbootPartition, _: u64, buf: &mut [u8]) -> BoardResult<usize, String> {
        Ok(buf.len())
    }
    fn select_boot_partition(&mut self, _: MediumId, _: u8) -> Result<(), String> {
        Ok(())
    }
    fn otp_read(&mut self, _: u64, _: &mut [u8]) -> Result<(), String> {
        Ok(())
    }
    fn otp_write(&mut self, _: u64, _: &[u8]) -> Result<(), String> {
        Ok(())
    }
    fn pmic_read(&mut self, _: u64, _: &mut [u8]) -> Result<(), String> {
        Ok(())
    }
    fn pmic_write(&mut self, _: u64, _: &[u8]) -> Result<(), String> {
        Ok(())
    }
    fn log(&mut self, line: fmt::Arguments<'_>) {
        self.log.push(line.to_string());
    }
}

fn host_check_errors(text: &str) -> usize {
    let mut lay = match layout::parse(text, Path::new("t.tsv")) {
        Ok(l) => l,
        Err(e) => return e.0.len(),
    };
    let mut devices = BTreeMap::new();
    devices.insert(
        Ip {
            kind: IpKind::Mmc,
            instance: 1,
        },
        DeviceGeometry {
            size: Some(64 << 20),
            erase_size: Some(512 << 10),
            boot_size: Some(1 << 20),
        },
    );
    let opts = CheckOptions {
        devices,
        skip_files: true,
        ..Default::default()
    };
    layout::check(&mut lay, &opts).len()
}

/// `init_device` sorts each device's rows by address (`list_sort` with
/// `part_cmp`) before giving each the space up to the next one; the host
/// wants increasing offsets in the file. The GPT follows address order.
#[test]
fn rows_out_of_address_order_are_sorted() {
    let text = format!(
        "{HEAD}P\t0x11\trootfs\tFileSystem\tmmc1\t0x00400000\tr\n\
         P\t0x10\tbootfs\tSystem\tmmc1\t0x00080000\tb\n"
    );
    let mut l = uboot(&text).unwrap();
    let mut board = Board::with_emmc();
    table::devices_init(&mut l, &mut board).unwrap();
    let sizes: Vec<(u8, u64, u16)> = l.rows.iter().map(|p| (p.id, p.size, p.number)).collect();
    assert_eq!(
        sizes,
        [
            (0x11, (64 << 20) - (512 << 10) - 0x400000, 2),
            (0x10, 0x380000, 1)
        ]
    );
    assert_eq!(board.gpt, [["bootfs", "rootfs"]]);
    assert!(host_check_errors(&text) > 0);
}

/// `treat_partition_list` skips `none` rows before its duplicate search
/// and compares each device row with the rows after it only: a `none` row
/// sharing an Id with a later device row passes, the reverse does not.
/// The host wants every Id unique.
#[test]
fn duplicate_ids_are_searched_forward_from_device_rows() {
    let none = "-\t0x04\tfsbl-boot\tBinary\tnone\t0x0\tt\n";
    let dev = "P\t0x04\tfsbl1\tBinary\tmmc1\tboot1\tt\n";
    let ok = format!("{HEAD}{none}{dev}");
    let mut l = uboot(&ok).unwrap();
    table::devices_init(&mut l, &mut Board::with_emmc()).unwrap();
    assert_eq!(l.rows[1].size, 1 << 20);
    assert!(host_check_errors(&ok) > 0);
    let mut l = uboot(&format!("{HEAD}{dev}{none}")).unwrap();
    assert_eq!(
        table::devices_init(&mut l, &mut Board::with_emmc())
            .unwrap_err()
            .as_str(),
        "Layout: duplicated phase 0x4 for part fsbl1 and fsbl-boot"
    );
}

/// `init_device` messages: alignment on the erase group, the GPT area,
/// the device's end, and missing devices by U-Boot's names.
#[test]
fn device_checks_use_u_boots_messages() {
    let run = |rows: &str| {
        let mut l = uboot(&format!("{HEAD}{rows}")).unwrap();
        table::devices_init(&mut l, &mut Board::with_emmc())
            .map(|_| ())
            .unwrap_err()
            .to_string()
    };
    assert_eq!(
        run("P\t0x10\tb\tSystem\tmmc1\t0x00090000\tb\n"),
        "b (0x10): not aligned address : 0x90000 on erase size 0x80000"
    );
    assert_eq!(
        run("P\t0x10\tb\tSystem\tmmc1\t0x0\tb\n"),
        "b (0x10): invalid address 0x0 (min=0x80000)"
    );
    assert_eq!(
        run("P\t0x10\tb\tSystem\tmmc1\t0x10000000\tb\n"),
        "b (0x10): invalid address 0x10000000 (max=0x3f80000)"
    );
    assert_eq!(
        run("P\t0x10\tb\tSystem\tmmc0\t0x4400\tb\n"),
        "mmc device 0 not found"
    );
    assert_eq!(
        run("P\t0x10\tb\tSystem\tspi-nand0\t0x0\tb\n"),
        "MTD device spi-nand0 not found"
    );
    assert_eq!(
        run("P\t0x06\tfip\tBinary(2)\tmmc1\t0x80000\tb\n"),
        "fip (0x6): multiple binary 2 not supported"
    );
}

/// An eMMC board in U-Boot that has been sent the layout `HEAD` + `rows`.
fn layout_sent(rows: &str) -> Stm32mpDevice<Board> {
    let mut dev = Stm32mpDevice::new(Board::with_emmc());
    dev.enter(BootStage::UBootLayout);
    let text = format!("{HEAD}{rows}");
    dev.write(0, 0, text.as_bytes()).unwrap();
    dev.manifest(0, text.len() as u64).unwrap();
    dev
}

/// The core through its DFU backend: layout, DETACH, one partition, END.
#[test]
fn layout_detach_program_end() {
    let mut dev = layout_sent("P\t0x10\tbootfs\tSystem\tmmc1\t0x00080000\tb\n");
    let mut rec = [0u8; 16];
    let n = dev.phase_record(&mut rec);
    assert_eq!(&rec[..n], &[0, 0, 0, 0, 0xC2, 0, 0, 0, 0, 1]);
    let AfterDetach::Reenumerate { next, .. } = dev.detach() else {
        panic!("no re-enumeration");
    };
    dev.enter(next);
    let names: Vec<String> = dev
        .alt_names(BootStage::UBootProgram)
        .map(|(_, n)| n.to_string())
        .collect();
    assert_eq!(names[0], "@bootfs/0x10/1*63Me");
    assert_eq!(dev.phase(), 0x10);
    dev.write(0, 0, &[1; 100]).unwrap();
    dev.manifest(0, 100).unwrap();
    assert_eq!(dev.phase(), PHASE_END);
    assert_eq!(dev.board().written, [(0x10, 0, 100)]);
    assert_eq!(dev.detach(), AfterDetach::Boot);
}

/// `stm32prog_err` keeps the first message: a later error does not
/// replace it.
#[test]
fn the_first_error_is_kept() {
    let mut dev = layout_sent("X\t0x10\tb\tSystem\tmmc1\t0x80000\tb\n");
    assert_eq!(dev.error(), Some("Layout line 2: invalid option 'X' in X)"));
    dev.fail_with(format_args!("later"));
    assert_eq!(dev.error(), Some("Layout line 2: invalid option 'X' in X)"));
}

/// The GUID constants equal the host's (the SD-card writer and the
/// layout's type GUIDs).
#[test]
fn guids_match_the_host_tables() {
    assert_eq!(table::ROOTFS_PARTUUIDS[0], crate::sdcard::ROOTFS_PARTUUID);
    assert_eq!(table::FIP_PARTUUIDS[0].1, crate::sdcard::FIP_A_PARTUUID);
    assert_eq!(table::FIP_PARTUUIDS[1].1, crate::sdcard::FIP_B_PARTUUID);
    use crate::layout::PartType;
    for (t, g) in [
        (PartType::Binary { copies: 1 }, table::TYPE_LINUX_RESERVED),
        (PartType::Fip, table::TYPE_FIP),
        (PartType::FwuMdata, table::TYPE_FWU_MDATA),
        (PartType::Env, table::TYPE_UBOOT_ENV),
        (PartType::Esp, table::TYPE_ESP),
        (PartType::FileSystem, table::TYPE_LINUX),
    ] {
        assert_eq!(*t.gpt_type_guid().unwrap().as_bytes(), g, "{t}");
    }
}

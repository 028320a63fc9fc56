//! Flash model behaviour as a board and a power-fail test see it.

use std::time::Duration;

use dfukit_core::{FlashOp, Instant};
use dfukit_sim::{
    CutPoint, FlashChip, FlashGeometry, FlashModelError, FlashTiming, OpOutcome, PowerCutPlan,
    PowerSupply, Scheduler, SimRng, StateDir, Storage, ERASED,
};
use proptest::prelude::*;

const QSPI: u32 = 0x1200_0000;

fn internal() -> FlashChip {
    FlashChip::nrf52840_internal(Storage::in_memory(1 << 20)).unwrap()
}

fn qspi() -> FlashChip {
    FlashChip::mx25r6435f(Storage::in_memory(8 << 20)).unwrap()
}

fn erase(addr: u32, len: u32) -> FlashOp<'static> {
    FlashOp::Erase { addr, len }
}

fn program(addr: u32, data: &[u8]) -> FlashOp<'_> {
    FlashOp::Program { addr, data }
}

fn read(chip: &FlashChip, addr: u32, len: usize) -> Vec<u8> {
    let mut buf = vec![0; len];
    chip.read(addr, &mut buf).unwrap();
    buf
}

#[test]
fn erase_before_write_is_enforced() {
    let mut c = internal();
    c.apply(&program(0x1000, &[0x12, 0x34, 0x56, 0x78]))
        .unwrap();
    let err = c
        .apply(&program(0x1000, &[0x02, 0x04, 0x06, 0x08]))
        .unwrap_err();
    assert!(matches!(
        err,
        FlashModelError::ProgramOverNonErased { addr: 0x1000 }
    ));
    assert_eq!(
        err.to_string(),
        "program over non-erased flash at 0x00001000 (erase before write)"
    );
    // Even programming all-ones over it is refused: strict mode asserts erased.
    assert!(c.apply(&program(0x1000, &[0xFF; 4])).is_err());
    assert_eq!(read(&c, 0x1000, 4), [0x12, 0x34, 0x56, 0x78]);
    c.apply(&erase(0x1000, 4096)).unwrap();
    assert_eq!(read(&c, 0x1000, 4), [ERASED; 4]);
    c.apply(&program(0x1000, &[0x02, 0x04, 0x06, 0x08]))
        .unwrap();
    assert_eq!(read(&c, 0x1000, 4), [0x02, 0x04, 0x06, 0x08]);
}

#[test]
fn non_strict_programs_and() {
    let mut c = internal();
    c.set_strict(false);
    c.apply(&program(0x20, &[0xF0, 0x0F, 0xAA, 0xFF])).unwrap();
    c.apply(&program(0x20, &[0x3C, 0x3C, 0xFF, 0x00])).unwrap();
    assert_eq!(read(&c, 0x20, 4), [0x30, 0x0C, 0xAA, 0x00]);
}

#[test]
fn alignment_and_bounds_errors() {
    let mut c = internal();
    let e = c.apply(&program(0x1002, &[0; 4])).unwrap_err();
    assert!(matches!(
        e,
        FlashModelError::Unaligned {
            addr: 0x1002,
            align: 4,
            ..
        }
    ));
    assert!(e.to_string().contains("0x00001002"), "{e}");
    assert!(matches!(
        c.apply(&program(0x1000, &[0; 3])),
        Err(FlashModelError::Unaligned { len: 3, .. })
    ));
    assert!(matches!(
        c.apply(&erase(0x800, 4096)),
        Err(FlashModelError::Unaligned { align: 4096, .. })
    ));
    assert!(matches!(
        c.apply(&erase(0, 100)),
        Err(FlashModelError::Unaligned { .. })
    ));
    let e = c.apply(&erase(0x10_0000, 4096)).unwrap_err();
    assert!(matches!(
        e,
        FlashModelError::OutOfBounds {
            addr: 0x10_0000,
            ..
        }
    ));
    assert_eq!(
        e.to_string(),
        "erase of 4096 bytes at 0x00100000 is outside the chip (0x00000000..0x00100000)"
    );
    let mut q = qspi();
    assert!(matches!(
        q.apply(&program(0x1000, &[0])),
        Err(FlashModelError::OutOfBounds { start: QSPI, .. })
    ));
    assert!(matches!(
        q.apply(&program(QSPI + (8 << 20) - 1, &[0, 0])),
        Err(FlashModelError::OutOfBounds { .. })
    ));
    let mut buf = [0; 2];
    assert!(matches!(
        q.read(QSPI - 1, &mut buf),
        Err(FlashModelError::ReadOutOfBounds {
            addr: 0x11FF_FFFF,
            ..
        })
    ));
    // Nothing changed, nothing counted.
    assert_eq!(c.counters().programs + c.counters().erases, 0);
    assert!(c.contents().iter().all(|&b| b == ERASED));
}

#[test]
fn qspi_program_crossing_page_is_rejected() {
    let mut q = qspi();
    assert!(q.contains(QSPI, 8 << 20));
    assert!(!q.contains(QSPI, (8 << 20) + 1));
    // Byte-granular inside a page is fine, up to the page end.
    q.apply(&program(QSPI + 0x103, &[0x11; 0xFD])).unwrap();
    let e = q.apply(&program(QSPI + 0x2F0, &[0x22; 0x20])).unwrap_err();
    assert!(matches!(
        e,
        FlashModelError::CrossesProgramPage {
            addr: 0x1200_02F0,
            len: 0x20,
            page: 256
        }
    ));
    assert!(e.to_string().contains("0x120002f0"), "{e}");
    assert!(matches!(
        q.apply(&program(QSPI, &[0; 257])),
        Err(FlashModelError::CrossesProgramPage { .. })
    ));
    q.apply(&program(QSPI + 0x200, &[0x33; 256])).unwrap();
}

#[test]
fn durations_follow_the_datasheets() {
    let mut c = internal();
    assert_eq!(c.apply(&erase(0, 4096)).unwrap(), Duration::from_millis(85));
    assert_eq!(
        c.apply(&program(0, &[0; 16])).unwrap(),
        Duration::from_micros(4 * 41)
    );
    let mut q = qspi();
    assert_eq!(
        q.apply(&erase(QSPI, 8192)).unwrap(),
        Duration::from_millis(80)
    );
    assert_eq!(
        q.apply(&program(QSPI, &[0; 256])).unwrap(),
        Duration::from_micros(850)
    );
    q.set_timing(FlashTiming::instant());
    assert_eq!(q.apply(&erase(QSPI, 4096)).unwrap(), Duration::ZERO);
    let n = q.counters();
    assert_eq!(
        (n.erases, n.programs, n.bytes_erased, n.bytes_programmed),
        (2, 1, 12288, 256)
    );
    assert_eq!(n.busy, Duration::from_micros(80_850));
}

#[test]
fn file_storage_persists_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let state = StateDir::open(dir.path()).unwrap();
    {
        let mut q = FlashChip::mx25r6435f(state.open_image("qspi", 8 << 20).unwrap()).unwrap();
        q.apply(&program(QSPI + 0x10, b"hello")).unwrap();
        // Dropped without any flush or sync: write-through already happened.
    }
    let raw = std::fs::read(dir.path().join("qspi.bin")).unwrap();
    assert_eq!(raw.len(), 8 << 20);
    assert_eq!(&raw[0x10..0x15], b"hello");
    assert_eq!(raw[0x15], ERASED);

    let mut q = FlashChip::mx25r6435f(state.open_image("qspi", 8 << 20).unwrap()).unwrap();
    assert_eq!(read(&q, QSPI + 0x10, 5), b"hello");
    q.apply(&erase(QSPI, 4096)).unwrap();
    let raw = std::fs::read(dir.path().join("qspi.bin")).unwrap();
    assert!(raw[..4096].iter().all(|&b| b == ERASED));

    // The same file opened for a chip of another size is refused, by name.
    let e = Storage::open_file(dir.path().join("qspi.bin"), 1 << 20).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("qspi.bin") && msg.contains("8388608") && msg.contains("1048576"),
        "{msg}"
    );
}

#[test]
fn partial_program_leaves_exactly_the_prefix() {
    let data: Vec<u8> = (0..256u32).map(|i| i as u8).collect();
    let mut q = qspi();
    let d = q
        .apply_partial(&program(QSPI + 0x100, &data), CutPoint::Bytes(100))
        .unwrap();
    assert_eq!(d, Duration::from_micros(850).mul_f64(100.0 / 256.0));
    let got = read(&q, QSPI + 0x100, 256);
    assert_eq!(&got[..100], &data[..100]);
    assert!(got[100..].iter().all(|&b| b == ERASED));
    assert_eq!(q.counters().bytes_programmed, 100);
    assert_eq!(q.counters().interrupted, 1);

    // Word-programmed internal flash tears only between whole words.
    let mut c = internal();
    c.apply_partial(&program(0x40, &[0u8; 16]), CutPoint::Fraction(0.6))
        .unwrap();
    let got = read(&c, 0x40, 16);
    assert_eq!(&got[..8], &[0; 8]);
    assert_eq!(&got[8..], &[ERASED; 8]);
}

#[test]
fn partial_erase_is_neither_erased_nor_intact_and_seeded() {
    let run = |seed: u64| {
        let mut q = qspi();
        q.set_rng(SimRng::new(seed));
        for page in 0..32 {
            q.apply(&program(QSPI + page * 256, &[0x00; 256])).unwrap();
        }
        // Two sectors: cut three quarters of the way through the op, i.e.
        // half-way through the second sector.
        q.apply_partial(&erase(QSPI, 8192), CutPoint::Fraction(0.75))
            .unwrap();
        q.contents()[..8192].to_vec()
    };
    let a = run(1);
    assert!(
        a[..4096].iter().all(|&b| b == ERASED),
        "first sector fully erased"
    );
    let second = &a[4096..];
    assert!(second.iter().any(|&b| b != ERASED), "not fully erased");
    assert!(second.iter().any(|&b| b != 0x00), "not intact");
    let ones: u32 = second.iter().map(|b| b.count_ones()).sum();
    let frac = f64::from(ones) / (4096.0 * 8.0);
    assert!(
        (0.45..0.55).contains(&frac),
        "about half the bits erased, got {frac}"
    );
    assert_eq!(a, run(1), "same seed, same bytes");
    assert_ne!(a, run(2), "another seed, other bytes");
}

/// Runs the same little update sequence over two chips with `supply`,
/// stopping when power goes; returns how many ops were completed.
fn scenario(int: &mut FlashChip, ext: &mut FlashChip, supply: &mut PowerSupply) -> u64 {
    let ops: [(bool, FlashOp<'static>); 6] = [
        (true, erase(QSPI, 4096)),
        (true, program(QSPI, &[1; 256])),
        (false, erase(0x8000, 4096)),
        (true, program(QSPI + 256, &[2; 256])),
        (false, program(0x8000, &[3; 64])),
        (false, program(0x8040, &[4; 4])),
    ];
    let mut done = 0;
    for (on_ext, op) in ops {
        let chip = if on_ext { &mut *ext } else { &mut *int };
        match supply.apply(chip, &op).unwrap() {
            OpOutcome::Completed(_) => done += 1,
            OpOutcome::Interrupted(_) | OpOutcome::PowerOff => break,
        }
    }
    done
}

#[test]
fn cut_before_k_fires_exactly_at_k_across_two_chips() {
    let mut supply = PowerSupply::new(PowerCutPlan::Never);
    let total = scenario(&mut internal(), &mut qspi(), &mut supply);
    assert_eq!((total, supply.ops()), (6, 6));

    for plan in PowerCutPlan::each_before(total) {
        let k = plan.op().unwrap();
        let (mut int, mut ext) = (internal(), qspi());
        let mut supply = PowerSupply::new(plan);
        assert_eq!(scenario(&mut int, &mut ext, &mut supply), k - 1);
        assert!(!supply.is_on());
        assert_eq!(supply.ops(), k);
        let applied = int.counters().erases
            + int.counters().programs
            + ext.counters().erases
            + ext.counters().programs;
        assert_eq!(applied, k - 1, "op {k} and later never reached a chip");
        // After the cut the board reboots and the plan is gone.
        supply.power_on(PowerCutPlan::Never);
        assert!(supply.apply(&mut ext, &erase(QSPI, 4096)).unwrap() != OpOutcome::PowerOff);
    }

    // Cutting part-way through op 4 (the second QSPI page) leaves its first half.
    let (mut int, mut ext) = (internal(), qspi());
    let mut supply = PowerSupply::new(PowerCutPlan::during(4, CutPoint::Fraction(0.5)));
    assert_eq!(scenario(&mut int, &mut ext, &mut supply), 3);
    let page = read(&ext, QSPI + 256, 256);
    assert_eq!(&page[..128], &[2; 128]);
    assert_eq!(&page[128..], &[ERASED; 128]);
}

#[test]
fn scheduler_is_deterministic() {
    let trace = || {
        let mut s = Scheduler::new();
        let mut out = Vec::new();
        s.schedule_in(Duration::from_millis(5), "erase done");
        s.schedule_in(Duration::from_millis(1), "byte");
        s.schedule_in(Duration::from_millis(5), "timeout");
        let cancelled = s.schedule_in(Duration::from_millis(3), "cancelled");
        s.schedule_in(Duration::from_millis(1), "byte 2");
        s.cancel(cancelled);
        while let Some((t, e)) = s.pop() {
            out.push((t, e));
            if e == "byte" {
                // Scheduled for "now" while now has other events: after them.
                s.schedule_in(Duration::ZERO, "echo");
            }
        }
        (out, s.now())
    };
    let (a, end) = trace();
    let ms = |m: u64| Instant::from_micros(m * 1000);
    assert_eq!(
        a,
        [
            (ms(1), "byte"),
            (ms(1), "byte 2"),
            (ms(1), "echo"),
            (ms(5), "erase done"),
            (ms(5), "timeout"),
        ]
    );
    assert_eq!(end, ms(5));
    assert_eq!(trace().0, a);
}

/// A small chip for the property test, so that random ops collide often.
fn tiny() -> FlashChip {
    let g = FlashGeometry {
        base: 0x100,
        size: 1024,
        erase_size: 256,
        write_unit: 4,
        max_program: 64,
    };
    FlashChip::new(g, FlashTiming::instant(), Storage::in_memory(g.size)).unwrap()
}

#[derive(Debug, Clone)]
enum Step {
    Erase {
        sector: u32,
        count: u32,
    },
    Program {
        page: u32,
        word: u32,
        words: u32,
        fill: u8,
    },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (0u32..4, 1u32..=2).prop_map(|(sector, count)| Step::Erase { sector, count }),
        (0u32..16, 0u32..16, 1u32..=16, any::<u8>()).prop_map(|(page, word, words, fill)| {
            Step::Program {
                page,
                word,
                words,
                fill,
            }
        }),
    ]
}

proptest! {
    #[test]
    fn model_matches_reference(strict in any::<bool>(), steps in proptest::collection::vec(step(), 1..40)) {
        let mut chip = tiny();
        chip.set_strict(strict);
        let mut reference = vec![0xFFu8; 1024];
        for s in steps {
            match s {
                Step::Erase { sector, count } => {
                    let count = count.min(4 - sector);
                    let (off, len) = (sector * 256, count * 256);
                    chip.apply(&erase(0x100 + off, len)).unwrap();
                    reference[off as usize..(off + len) as usize].fill(0xFF);
                }
                Step::Program { page, word, words, fill } => {
                    // Keep inside the 64-byte program page: valid by construction.
                    let words = words.min(16 - word);
                    let off = (page * 64 + word * 4) as usize;
                    let data: Vec<u8> = (0..words * 4).map(|i| fill.rotate_left(i)).collect();
                    let range = off..off + data.len();
                    let erased = reference[range.clone()].iter().all(|&b| b == 0xFF);
                    let r = chip.apply(&program(0x100 + off as u32, &data));
                    if strict && !erased {
                        let first = range.clone().find(|&i| reference[i] != 0xFF).unwrap();
                        let is_expected_error = matches!(
                            r,
                            Err(FlashModelError::ProgramOverNonErased { addr }) if addr == 0x100 + first as u32
                        );
                        prop_assert!(is_expected_error, "{:?}", r);
                    } else {
                        prop_assert!(r.is_ok(), "{:?}", r);
                        for (cell, d) in reference[range].iter_mut().zip(&data) {
                            *cell &= d;
                        }
                    }
                }
            }
            prop_assert_eq!(chip.contents(), &reference[..]);
        }
    }
}

#[test]
fn stm32f4_erases_whole_sectors_with_their_own_times() {
    let mut chip = FlashChip::stm32f4_internal(Storage::in_memory(1 << 20)).unwrap();
    // Sector 5 (128 KiB at 0x08020000): one sector, one second typical.
    let d = chip.apply(&erase(0x0802_0000, 128 * 1024)).unwrap();
    assert_eq!(d, Duration::from_millis(1000));
    // Sectors 0..=1 (2 x 16 KiB) together: 500 ms.
    let d = chip.apply(&erase(0x0800_0000, 32 * 1024)).unwrap();
    assert_eq!(d, Duration::from_millis(500));
    // Half of a 128 KiB sector is not an erase the part can do.
    let e = chip.apply(&erase(0x0802_0000, 64 * 1024)).unwrap_err();
    assert!(
        matches!(e, FlashModelError::Unaligned { align: 131072, .. }),
        "{e}"
    );
    // A 16 KiB-aligned erase that starts inside the 64 KiB sector is refused too.
    assert!(chip.apply(&erase(0x0801_4000, 16 * 1024)).is_err());
    // Word programs: 16 us each.
    let d = chip.apply(&program(0x0802_0000, &[0u8; 1024])).unwrap();
    assert_eq!(d, Duration::from_micros(16 * 256));
}

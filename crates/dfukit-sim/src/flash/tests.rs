use super::*;

fn small() -> FlashChip {
    let g = FlashGeometry {
        base: 0x1000,
        size: 4 * 64,
        erase_size: 64,
        write_unit: 4,
        max_program: 32,
    };
    FlashChip::new(g, FlashTiming::instant(), Storage::in_memory(g.size)).unwrap()
}

#[test]
fn nrf52840_durations() {
    let t = FlashTiming::nrf52840_internal();
    let page = [0u8; 4096];
    assert_eq!(
        t.duration(&FlashOp::Erase { addr: 0, len: 8192 }),
        Duration::from_millis(170)
    );
    assert_eq!(
        t.duration(&FlashOp::Program {
            addr: 0,
            data: &page
        }),
        Duration::from_micros(41 * 1024)
    );
}

#[test]
fn mx25r_durations_typ_and_max() {
    let t = FlashTiming::mx25r6435f();
    let four = [0u8; 4];
    let op = FlashOp::Program {
        addr: 0,
        data: &four,
    };
    assert_eq!(t.duration(&op), Duration::from_micros(850));
    assert_eq!(
        t.duration_at(&op, TimingCorner::Max),
        Duration::from_millis(4)
    );
    let erase = FlashOp::Erase { addr: 0, len: 4096 };
    assert_eq!(
        t.with_corner(TimingCorner::Max).duration(&erase),
        Duration::from_millis(240)
    );
    assert_eq!(FlashTiming::instant().duration(&erase), Duration::ZERO);
}

#[test]
fn presets_check_storage_size() {
    assert!(FlashChip::nrf52840_internal(Storage::in_memory(1 << 20)).is_ok());
    assert!(matches!(
        FlashChip::mx25r6435f(Storage::in_memory(1 << 20)),
        Err(FlashModelError::StorageSize {
            expected: 0x80_0000,
            actual: 0x10_0000
        })
    ));
}

#[test]
fn geometry_rules() {
    let mut g = FlashGeometry::NRF52840_INTERNAL;
    assert!(g.validate().is_ok());
    assert!(FlashGeometry::MX25R6435F_ON_NRF52840.validate().is_ok());
    g.write_unit = 3;
    assert!(g.validate().is_err());
    let g = FlashGeometry {
        base: 0xFFFF_F000,
        size: 0x2000,
        ..FlashGeometry::NRF52840_INTERNAL
    };
    assert!(g.validate().is_err());
}

#[test]
fn cut_point_clamps() {
    assert_eq!(CutPoint::Fraction(0.5).bytes_of(10), 5);
    assert_eq!(CutPoint::Fraction(2.0).bytes_of(10), 10);
    assert_eq!(CutPoint::Fraction(f64::NAN).bytes_of(10), 0);
    assert_eq!(CutPoint::Bytes(99).bytes_of(10), 10);
}

#[test]
fn invalid_op_changes_nothing() {
    let mut c = small();
    c.apply(&FlashOp::Program {
        addr: 0x1000,
        data: &[0; 4],
    })
    .unwrap();
    let before = c.contents().to_vec();
    // Second word is erased, first is not: the whole op is refused.
    let err = c
        .apply(&FlashOp::Program {
            addr: 0x1000,
            data: &[0x0F; 8],
        })
        .unwrap_err();
    assert!(matches!(
        err,
        FlashModelError::ProgramOverNonErased { addr: 0x1000 }
    ));
    assert_eq!(c.contents(), &before[..]);
    assert_eq!(c.counters().programs, 1);
}

#[test]
fn read_flash_trait_reports_first_bad_address() {
    let mut c = small();
    let mut buf = [0; 8];
    let e = ReadFlash::read(&mut c, 0x10FC, &mut buf).unwrap_err();
    assert_eq!(e.addr, 0x1100);
    ReadFlash::read(&mut c, 0x10F8, &mut buf).unwrap();
    assert_eq!(buf, [0xFF; 8]);
}

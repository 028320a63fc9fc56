//! The Secure DFU host against the simulated nRF52840, in virtual time.

mod common;

use common::*;
use dfukit_core::Crc32;
use dfukit_nordic::bootloader::{BootloaderEvent, FlashFault};
use dfukit_nordic::host::{self, HostError, Options};
use dfukit_nordic::proto::{ExtError, ResultCode};
use dfukit_sim::boards::nrf52840::{Bank1, Fault, Nrf52840};
use dfukit_sim::links::serial::BoardLink;
use dfukit_sim::{CutPoint, PowerCutPlan};
use std::time::Duration;

const APP_START: usize = 0x27000;

fn opts() -> Options {
    Options {
        prn: 0,
        response_timeout: Duration::from_secs(3),
        connect_timeout: Duration::from_millis(500),
        object_retries: 3,
        ..Options::default()
    }
}

fn run(board: &mut Nrf52840, init: &[u8], image: &[u8]) -> Result<(), HostError> {
    let mut link = BoardLink::new(board);
    host::update(&mut link, &opts(), init, image, &mut |_| {})
}

/// Lets the board finish whatever it does without input (activation after
/// the update's reset).
fn settle(board: &mut Nrf52840) {
    let until = board.now() + Duration::from_secs(30);
    while let Some(t) = board.next_wakeup() {
        if t > until {
            break;
        }
        board.advance(t);
        if board.bootloader().mode() == dfukit_nordic::bootloader::Mode::Dfu
            && !board.bootloader().is_busy()
        {
            break;
        }
    }
}

fn assert_runs(board: &mut Nrf52840, image: &[u8], version: u32) {
    let ins = board.inspect();
    assert!(ins.app_valid, "no valid app: {ins:?}");
    assert_eq!(ins.app_version, version, "{ins:?}");
    assert_eq!(ins.app_size as usize, image.len());
    let mut crc = Crc32::new();
    crc.update(image);
    assert_eq!(ins.app_crc, crc.value());
    let flash = &board.memory().internal.contents()[APP_START..APP_START + image.len()];
    assert!(
        flash == image,
        "bank 0 does not hold the image byte for byte"
    );
    assert!(
        board.model_errors().is_empty(),
        "{:?}",
        board.model_errors()
    );
}

/// Installs `image` as version `v` on `board` and waits for activation.
fn install(board: &mut Nrf52840, key: &p256::ecdsa::SigningKey, image: &[u8], v: u32) {
    settle(board);
    let init = init_packet(
        key,
        image,
        &Claims {
            fw_version: v,
            ..Claims::default()
        },
    );
    run(board, &init, image).unwrap();
    settle(board);
    assert_runs(board, image, v);
}

#[test]
fn qspi_bank1_update_and_activation() {
    let k = key(1);
    let mut b = blank_board(config(&k, Bank1::Qspi));
    let v1 = image(20_000, 1);
    install(&mut b, &k, &v1, 1);
    let v2 = image(70_001, 2);
    install(&mut b, &k, &v2, 2);
    // The image went through bank 1 on QSPI: it is there byte for byte.
    assert_eq!(&b.memory().qspi.contents()[..v2.len()], &v2[..]);
    assert!(b.events().iter().any(
        |(_, e)| matches!(e, BootloaderEvent::Activated { size, .. } if *size as usize == v2.len())
    ));
}

#[test]
fn internal_dual_bank_and_single_bank_fallback() {
    let k = key(2);
    let mut b = blank_board(config(&k, Bank1::Internal));
    let small = image(40_000, 3);
    install(&mut b, &k, &small, 1);
    // Fits beside the current app: dual bank.
    let next = image(60_000, 4);
    install(&mut b, &k, &next, 2);
    assert_eq!(b.inspect().bank1_code, 0);
    // 500 KiB does not fit beside a 60 KB app in 828 KiB: single bank.
    let big = image(500 * 1024, 5);
    install(&mut b, &k, &big, 3);
}

/// MCUboot's method: count a clean update's flash operations (transfer and
/// activation), then for every k cut power before operation k, restart the
/// board, check it still has a valid app, resume with the host, and check it
/// ends with the new one.
fn power_cut_sweep(cut: impl Fn(u64) -> PowerCutPlan) {
    let k = key(3);
    let cfg = config(&k, Bank1::Qspi);
    let mut base = blank_board(cfg.clone());
    let v1 = image(9_000, 10);
    install(&mut base, &k, &v1, 1);
    let internal = base.memory().internal.contents().to_vec();
    let qspi = base.memory().qspi.contents().to_vec();
    // Two activation steps (8 pages each) and a short last object.
    let v2 = image(41_000, 11);
    let init = init_packet(
        &k,
        &v2,
        &Claims {
            fw_version: 2,
            ..Claims::default()
        },
    );

    let mut clean = board_from(cfg.clone(), &internal, &qspi);
    settle(&mut clean);
    clean.arm(PowerCutPlan::Never);
    run(&mut clean, &init, &v2).unwrap();
    settle(&mut clean);
    assert_runs(&mut clean, &v2, 2);
    let total = clean.power().ops();
    assert!(
        total > 60,
        "a clean update took only {total} flash operations"
    );

    for n in 1..=total {
        let mut b = board_from(cfg.clone(), &internal, &qspi);
        settle(&mut b);
        b.arm(cut(n));
        let _ = run(&mut b, &init, &v2);
        settle(&mut b);
        assert!(!b.is_powered(), "cut {n} of {total} never fired");
        b.power_cycle(PowerCutPlan::Never);
        settle(&mut b);
        let ins = b.inspect();
        assert!(
            ins.app_valid,
            "cut at op {n}/{total}: no valid app after reboot: {ins:?}"
        );
        assert!(ins.app_version == 1 || ins.app_version == 2, "{ins:?}");
        if ins.app_version == 1 {
            // The update did not finish: the host resumes it.
            run(&mut b, &init, &v2).unwrap_or_else(|e| panic!("cut at op {n}: resume failed: {e}"));
            settle(&mut b);
        }
        assert_runs(&mut b, &v2, 2);
    }
}

#[test]
fn power_cut_before_every_flash_operation() {
    power_cut_sweep(PowerCutPlan::before);
}

#[test]
fn power_cut_part_way_through_every_flash_operation() {
    power_cut_sweep(|n| PowerCutPlan::during(n, CutPoint::Fraction(0.5)));
}

#[test]
fn lost_qspi_completion_is_reported_not_wedged() {
    let k = key(4);
    let mut cfg = config(&k, Bank1::Qspi);
    let mut b = blank_board(cfg.clone());
    let v1 = image(12_000, 20);
    install(&mut b, &k, &v1, 1);
    let internal = b.memory().internal.contents().to_vec();
    let qspi = b.memory().qspi.contents().to_vec();
    // The user report: the QSPI driver stops calling back after a few operations.
    cfg.fault = Some(Fault::QspiCompletionsStop { after: 3 });
    let mut b = board_from(cfg, &internal, &qspi);
    settle(&mut b);
    let v2 = image(30_000, 21);
    let init = init_packet(
        &k,
        &v2,
        &Claims {
            fw_version: 2,
            ..Claims::default()
        },
    );
    let start = b.now();
    let err = run(&mut b, &init, &v2).unwrap_err();
    let elapsed = b.now().saturating_duration_since(start);
    match err {
        HostError::Rejected {
            ext: Some(ExtError::FlashCompletionTimeout),
            ..
        } => {}
        other => panic!("expected a flash completion timeout, got {other}"),
    }
    assert!(err_text(&b).contains("CompletionTimeout"));
    // Bounded: the device's 1 s flash timeout, not the host's blind wait.
    assert!(elapsed < Duration::from_secs(3), "took {elapsed:?}");
    assert!(b.events().iter().any(|(_, e)| matches!(
        e,
        BootloaderEvent::FlashFault {
            fault: FlashFault::CompletionTimeout,
            ..
        }
    )));
    // The old application is untouched.
    b.power_cycle(PowerCutPlan::Never);
    settle(&mut b);
    assert_runs(&mut b, &v1, 1);
}

fn err_text(b: &Nrf52840) -> String {
    format!("{:?}", b.events())
}

/// Each bad package is refused with the SDK's code, and the board keeps its app.
#[test]
fn bad_packages_are_refused_and_the_app_survives() {
    let k = key(5);
    let mut b = blank_board(config(&k, Bank1::Qspi));
    let v3 = image(16_000, 30);
    install(&mut b, &k, &v3, 3);
    let new = image(16_000, 31);
    let ok = Claims {
        fw_version: 4,
        ..Claims::default()
    };
    type Check = fn(&HostError) -> bool;
    let cases: Vec<(&str, Vec<u8>, Vec<u8>, Check)> = vec![
        (
            "signed with another key",
            init_packet(&key(9), &new, &ok),
            new.clone(),
            |e| {
                matches!(
                    e,
                    HostError::Rejected {
                        result: ResultCode::InvalidObject,
                        ..
                    }
                )
            },
        ),
        (
            "wrong hw_version",
            init_packet(
                &k,
                &new,
                &Claims {
                    hw_version: 53,
                    ..Claims {
                        fw_version: 4,
                        ..Claims::default()
                    }
                },
            ),
            new.clone(),
            |e| {
                matches!(
                    e,
                    HostError::Rejected {
                        ext: Some(ExtError::HwVersionFailure),
                        ..
                    }
                )
            },
        ),
        (
            "unmet sd_req",
            init_packet(
                &k,
                &new,
                &Claims {
                    sd_req: vec![0xAE],
                    ..Claims {
                        fw_version: 4,
                        ..Claims::default()
                    }
                },
            ),
            new.clone(),
            |e| {
                matches!(
                    e,
                    HostError::Rejected {
                        ext: Some(ExtError::SdVersionFailure),
                        ..
                    }
                )
            },
        ),
        (
            "downgrade",
            init_packet(
                &k,
                &new,
                &Claims {
                    fw_version: 2,
                    ..Claims::default()
                },
            ),
            new.clone(),
            |e| {
                matches!(
                    e,
                    HostError::Rejected {
                        ext: Some(ExtError::FwVersionFailure),
                        ..
                    }
                )
            },
        ),
        (
            "image larger than the bank",
            init_packet(&k, &image(9 << 20, 1), &ok),
            image(9 << 20, 1),
            |e| {
                matches!(
                    e,
                    HostError::Rejected {
                        ext: Some(ExtError::InsufficientSpace),
                        ..
                    }
                )
            },
        ),
        (
            "image that does not match its hash",
            init_packet(&k, &new, &ok),
            image(16_000, 99),
            |e| {
                matches!(
                    e,
                    HostError::Rejected {
                        ext: Some(ExtError::VerificationFailed),
                        ..
                    }
                )
            },
        ),
    ];
    for (what, init, img, expected) in cases {
        let err = run(&mut b, &init, &img).expect_err(what);
        assert!(expected(&err), "{what}: unexpected error {err}");
        assert!(!err.help().is_empty());
        settle(&mut b);
        b.power_cycle(PowerCutPlan::Never);
        settle(&mut b);
        assert_runs(&mut b, &v3, 3);
    }
}

/// An interrupted transfer resumes where the device's offset and CRC say.
#[test]
fn host_resumes_an_interrupted_transfer() {
    let k = key(6);
    let mut cfg = config(&k, Bank1::Qspi);
    cfg.flash_timing = false;
    let mut b = blank_board(cfg);
    let v1 = image(50_000, 40);
    let init = init_packet(&k, &v1, &Claims::default());
    settle(&mut b);
    // Send the init packet and three objects, then "unplug the cable".
    {
        let mut link = BoardLink::new(&mut b);
        let part = &v1[..3 * 4096];
        // Run a full update of the first part's worth by stopping the host
        // with a short image is not possible; instead, drive it and cut the
        // link through a failing link wrapper.
        let mut failing = FailAfter {
            inner: &mut link,
            writes_left: 3 * 4 + 1,
        };
        let _ = host::update(&mut failing, &opts(), &init, &v1, &mut |_| {});
        let _ = part;
    }
    let mut events = Vec::new();
    {
        let mut link = BoardLink::new(&mut b);
        host::update(&mut link, &opts(), &init, &v1, &mut |e| events.push(e)).unwrap();
    }
    assert!(
        events
            .iter()
            .any(|e| matches!(e, host::Event::InitPacketSent { resumed: true })),
        "{events:?}"
    );
    assert!(
        events
            .iter()
            .any(|e| matches!(e, host::Event::Resumed { offset } if *offset >= 2 * 4096)),
        "{events:?}"
    );
    settle(&mut b);
    assert_runs(&mut b, &v1, 1);
}

/// A link that fails after a number of WRITE requests, like a pulled cable.
struct FailAfter<'a, 'b> {
    inner: &'a mut BoardLink<'b>,
    writes_left: u32,
}

impl host::SecureDfuLink for FailAfter<'_, '_> {
    fn send(&mut self, req: &dfukit_nordic::proto::Request<'_>) -> std::io::Result<()> {
        if matches!(req, dfukit_nordic::proto::Request::Write(_)) {
            if self.writes_left == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::BrokenPipe,
                    "cable pulled",
                ));
            }
            self.writes_left -= 1;
        }
        self.inner.send(req)
    }
    fn recv(&mut self, timeout: Duration) -> std::io::Result<Option<Vec<u8>>> {
        self.inner.recv(timeout)
    }
    fn max_write(&self, mtu: u16) -> usize {
        self.inner.max_write(mtu)
    }
}

/// A link that flips one byte of the n-th WRITE, like line noise the
/// framing does not catch.
struct CorruptNth<'a, 'b> {
    inner: &'a mut BoardLink<'b>,
    n: u32,
    seen: u32,
}

impl host::SecureDfuLink for CorruptNth<'_, '_> {
    fn send(&mut self, req: &dfukit_nordic::proto::Request<'_>) -> std::io::Result<()> {
        if let dfukit_nordic::proto::Request::Write(data) = req {
            self.seen += 1;
            if self.seen == self.n {
                let mut bad = data.to_vec();
                bad[0] ^= 0x40;
                return self.inner.send(&dfukit_nordic::proto::Request::Write(&bad));
            }
        }
        self.inner.send(req)
    }
    fn recv(&mut self, timeout: Duration) -> std::io::Result<Option<Vec<u8>>> {
        self.inner.recv(timeout)
    }
    fn max_write(&self, mtu: u16) -> usize {
        self.inner.max_write(mtu)
    }
}

#[test]
fn an_object_whose_crc_does_not_match_is_sent_again() {
    let k = key(7);
    let mut b = blank_board(config(&k, Bank1::Qspi));
    settle(&mut b);
    let img = image(20_000, 50);
    let init = init_packet(&k, &img, &Claims::default());
    let mut events = Vec::new();
    {
        let mut link = BoardLink::new(&mut b);
        // Write 6 is in the second object (1 KiB writes, 4 per object).
        let mut noisy = CorruptNth {
            inner: &mut link,
            n: 6,
            seen: 0,
        };
        host::update(&mut noisy, &opts(), &init, &img, &mut |e| events.push(e)).unwrap();
    }
    let retries: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            host::Event::Retry { object, reason } => Some((*object, reason.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(retries.len(), 1, "{events:?}");
    assert_eq!(retries[0].0, 1);
    assert!(
        retries[0].1.contains("checksum mismatch"),
        "{}",
        retries[0].1
    );
    settle(&mut b);
    assert_runs(&mut b, &img, 1);
}

#[test]
fn power_cut_inside_every_operation_past_the_settings_crc() {
    // 0x70 bytes into a settings program: past the 0x5C bytes the SDK's CRC
    // covers, inside the stored init packet.
    power_cut_sweep(|n| PowerCutPlan::during(n, CutPoint::Bytes(0x70)));
}

/// A final object whose hash fails must not turn into "done" on a rerun.
#[test]
fn a_failed_validation_is_never_reported_as_success_later() {
    let k = key(8);
    let mut b = blank_board(config(&k, Bank1::Qspi));
    let v1 = image(8_192, 60);
    install(&mut b, &k, &v1, 1);
    let good = image(8_192, 61);
    let init = init_packet(
        &k,
        &good,
        &Claims {
            fw_version: 2,
            ..Claims::default()
        },
    );
    let wrong = image(8_192, 62);
    for attempt in 0..2 {
        let err = run(&mut b, &init, &wrong).expect_err("hash must fail");
        assert!(
            matches!(
                err,
                HostError::Rejected {
                    ext: Some(ExtError::VerificationFailed),
                    ..
                }
            ),
            "attempt {attempt}: {err}"
        );
        settle(&mut b);
    }
    assert!(!b.events().iter().any(
        |(_, e)| matches!(e, BootloaderEvent::Activated { size: 8_192, crc } if *crc != crc_of(&v1))
    ));
    assert_runs(&mut b, &v1, 1);
    // The right image still goes in afterwards.
    run(&mut b, &init, &good).unwrap();
    settle(&mut b);
    assert_runs(&mut b, &good, 2);
}

fn crc_of(b: &[u8]) -> u32 {
    let mut c = Crc32::new();
    c.update(b);
    c.value()
}

#[test]
fn a_qspi_image_larger_than_bank0_is_refused() {
    let k = key(10);
    let mut b = blank_board(config(&k, Bank1::Qspi));
    let v1 = image(8_000, 70);
    install(&mut b, &k, &v1, 1);
    // Fits in 8 MiB of QSPI, not in the 828 KiB application area of bank 0.
    let big = image(0xF5000 - 0x27000 + 5 * 4096, 71);
    let init = init_packet(
        &k,
        &big,
        &Claims {
            fw_version: 2,
            ..Claims::default()
        },
    );
    let err = run(&mut b, &init, &big).unwrap_err();
    assert!(
        matches!(
            err,
            HostError::Rejected {
                ext: Some(ExtError::InsufficientSpace),
                ..
            }
        ),
        "{err}"
    );
    settle(&mut b);
    assert_runs(&mut b, &v1, 1);
}

/// With PRN on, a lost completion still reaches the host as the device's
/// error, not as a silent timeout.
#[test]
fn lost_completion_with_prn_is_reported() {
    let k = key(11);
    let mut cfg = config(&k, Bank1::Qspi);
    cfg.mtu = 131; // UART: 64-byte writes
    cfg.fault = Some(Fault::QspiCompletionsStop { after: 3 });
    let mut b = blank_board(cfg);
    settle(&mut b);
    let img = image(12_000, 80);
    let init = init_packet(&k, &img, &Claims::default());
    for prn in [4u16, 8, 32] {
        let mut link = BoardLink::new(&mut b);
        let o = Options { prn, ..opts() };
        let err = host::update(&mut link, &o, &init, &img, &mut |_| {}).unwrap_err();
        assert!(
            matches!(
                err,
                HostError::Rejected {
                    ext: Some(ExtError::FlashCompletionTimeout),
                    ..
                }
            ),
            "prn {prn}: {err}"
        );
        b.power_cycle(PowerCutPlan::Never);
        settle(&mut b);
    }
}

/// A host started while the board is still activating the previous update
/// connects once the bootloader is up, without reading stale answers.
#[test]
fn host_started_during_activation_connects_cleanly() {
    let k = key(12);
    let mut b = blank_board(config(&k, Bank1::Qspi));
    settle(&mut b);
    let v1 = image(24_000, 90);
    run(&mut b, &init_packet(&k, &v1, &Claims::default()), &v1).unwrap();
    // No settle: the board is copying bank 1 into bank 0 right now (about
    // 0.8 s of flash time) and ignores the line meanwhile, as a real one does.
    let v2 = image(24_000, 91);
    let init = init_packet(
        &k,
        &v2,
        &Claims {
            fw_version: 2,
            ..Claims::default()
        },
    );
    let o = Options {
        connect_timeout: Duration::from_secs(5),
        ..opts()
    };
    let mut link = BoardLink::new(&mut b);
    host::update(&mut link, &o, &init, &v2, &mut |_| {}).unwrap();
    settle(&mut b);
    assert_runs(&mut b, &v2, 2);
}

/// A backup page torn by an earlier cut is rewritten at the next boot.
#[test]
fn a_torn_backup_page_is_repaired_at_boot() {
    let k = key(13);
    let cfg = config(&k, Bank1::Qspi);
    let mut b = blank_board(cfg.clone());
    let v1 = image(8_000, 100);
    install(&mut b, &k, &v1, 1);
    let mut internal = b.memory().internal.contents().to_vec();
    let qspi = b.memory().qspi.contents().to_vec();
    let main = internal[0xFF000..0xFF000 + 0x380].to_vec();
    // Half-erased backup page.
    internal[0xFE000..0xFE000 + 0x200].fill(0xFF);
    let mut b = board_from(cfg, &internal, &qspi);
    settle(&mut b);
    let repaired = &b.memory().internal.contents()[0xFE000..0xFE000 + 0x380];
    assert_eq!(repaired, &main[..], "backup not rewritten from main");
    assert_runs(&mut b, &v1, 1);
}

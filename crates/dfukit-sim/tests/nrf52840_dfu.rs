//! The Secure DFU host against the simulated nRF52840, in virtual time.

mod common;

use common::*;
use dfukit_core::{Clock, Instant};
use dfukit_nordic::bootloader::{BootloaderEvent, BootloaderFault};
use dfukit_nordic::host::{self, UpdateError, UpdateOptions};
use dfukit_nordic::proto::{ExtError, ResultCode};
use dfukit_sim::boards::nrf52840::{Bank1, BoardConfig, Fault, Nrf52840};
use dfukit_sim::links::serial::BoardLink;
use dfukit_sim::Board;
use dfukit_sim::{CutPoint, PowerCutPlan};
use std::time::Duration;

const APP_START: usize = 0x27000;

fn run(board: &mut Nrf52840, init: &[u8], image: &[u8]) -> Result<(), UpdateError> {
    run_with(board, &opts(), init, image)
}

fn run_with(
    board: &mut Nrf52840,
    o: &UpdateOptions,
    init: &[u8],
    image: &[u8],
) -> Result<(), UpdateError> {
    host::update(&mut BoardLink::new(board), o, init, image, &mut |_| {})
}

/// Asserts the board runs `image` as `version`, and bank 0 holds it byte
/// for byte.
fn assert_runs(board: &mut Nrf52840, image: &[u8], version: u32) {
    let ins = assert_app(board, image);
    assert_eq!(ins.app_version, version, "{ins:?}");
    let flash = &board.memory().internal.contents()[APP_START..APP_START + image.len()];
    assert!(
        flash == image,
        "bank 0 does not hold the image byte for byte"
    );
}

/// Sends `init` and `image`, waits for activation, and asserts the board
/// runs `image` as `version`.
fn update_and_check(board: &mut Nrf52840, init: &[u8], image: &[u8], version: u32) {
    run(board, init, image).unwrap();
    settle(board);
    assert_runs(board, image, version);
}

/// Sends `init` and `image`, asserts the host fails with an error that
/// `expected` accepts (`what` names the case), and lets the board settle.
fn refused(
    board: &mut Nrf52840,
    init: &[u8],
    image: &[u8],
    what: &str,
    expected: impl Fn(&UpdateError) -> bool,
) -> UpdateError {
    let err = run(board, init, image).expect_err(what);
    assert!(expected(&err), "{what}: unexpected error {err}");
    settle(board);
    err
}

/// Installs `image` as version `v` on `board` and waits for activation.
fn install(board: &mut Nrf52840, key: &p256::ecdsa::SigningKey, image: &[u8], v: u32) {
    settle(board);
    update_and_check(
        board,
        &init_packet(key, image, &Claims::version(v)),
        image,
        v,
    );
}

/// A board with the given config running `v1` as version 1, as copies of
/// its (internal, QSPI) flash for boards restarted from that state.
fn flash_with_v1(cfg: &BoardConfig, k: &p256::ecdsa::SigningKey, v1: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let mut b = blank_board(cfg.clone());
    install(&mut b, k, v1, 1);
    (
        b.memory().internal.contents().to_vec(),
        b.memory().qspi.contents().to_vec(),
    )
}

/// A board with bank 1 on QSPI, trusting test key `key_seed`, running
/// `image` as `version`; and that key.
fn qspi_board_running(
    key_seed: u8,
    image: &[u8],
    version: u32,
) -> (p256::ecdsa::SigningKey, Nrf52840) {
    let k = key(key_seed);
    let mut b = blank_board(config(&k, Bank1::Qspi));
    install(&mut b, &k, image, version);
    (k, b)
}

/// Power off and on again, then let the board boot.
fn reboot(board: &mut Nrf52840) {
    board.power_cycle(PowerCutPlan::Never);
    settle(board);
}

#[test]
fn qspi_bank1_update_and_activation() {
    let v1 = image(20_000, 1);
    let (k, mut b) = qspi_board_running(1, &v1, 1);
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
    let (internal, qspi) = flash_with_v1(&cfg, &k, &image(9_000, 10));
    // Two activation steps (8 pages each) and a short last object.
    let v2 = image(41_000, 11);
    let init = init_packet(&k, &v2, &Claims::version(2));

    let mut clean = booted_from(cfg.clone(), &internal, &qspi);
    clean.arm(PowerCutPlan::Never);
    update_and_check(&mut clean, &init, &v2, 2);
    let total = clean.power().ops();
    assert!(
        total > 60,
        "a clean update took only {total} flash operations"
    );

    for n in 1..=total {
        let mut b = booted_from(cfg.clone(), &internal, &qspi);
        b.arm(cut(n));
        let _ = run(&mut b, &init, &v2);
        settle(&mut b);
        assert!(!b.is_powered(), "cut {n} of {total} never fired");
        reboot(&mut b);
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
fn power_cut_inside_every_operation_past_the_settings_crc() {
    // 0x70 bytes into a settings program: past the 0x5C bytes the SDK's CRC
    // covers, inside the stored init packet.
    power_cut_sweep(|n| PowerCutPlan::during(n, CutPoint::Bytes(0x70)));
}

#[test]
fn lost_qspi_completion_is_reported_not_wedged() {
    let k = key(4);
    let mut cfg = config(&k, Bank1::Qspi);
    let v1 = image(12_000, 20);
    let (internal, qspi) = flash_with_v1(&cfg, &k, &v1);
    // The user report: the QSPI driver stops calling back after a few operations.
    cfg.fault = Some(Fault::QspiCompletionsStop { after: 3 });
    let mut b = booted_from(cfg, &internal, &qspi);
    let v2 = image(30_000, 21);
    let init = init_packet(&k, &v2, &Claims::version(2));
    let start = b.now();
    let err = run(&mut b, &init, &v2).unwrap_err();
    let elapsed = b.now().saturating_duration_since(start);
    assert!(
        rejected_with(&err, ExtError::FlashCompletionTimeout),
        "expected a flash completion timeout, got {err}"
    );
    assert!(err_text(&b).contains("CompletionTimeout"));
    // Bounded: the device's 1 s flash timeout, not the host's blind wait.
    assert!(elapsed < Duration::from_secs(3), "took {elapsed:?}");
    assert!(b.events().iter().any(|(_, e)| matches!(
        e,
        BootloaderEvent::BootloaderFault {
            fault: BootloaderFault::CompletionTimeout,
            ..
        }
    )));
    // The old application is untouched.
    reboot(&mut b);
    assert_runs(&mut b, &v1, 1);
}

fn err_text(b: &Nrf52840) -> String {
    format!("{:?}", b.events())
}

/// Each bad package is refused with the SDK's code, and the board keeps its app.
#[test]
fn bad_packages_are_refused_and_the_app_survives() {
    let v3 = image(16_000, 30);
    let (k, mut b) = qspi_board_running(5, &v3, 3);
    let new = image(16_000, 31);
    let ok = Claims::version(4);
    type Check = fn(&UpdateError) -> bool;
    let cases: Vec<(&str, Vec<u8>, Vec<u8>, Check)> = vec![
        (
            "signed with another key",
            init_packet(&key(9), &new, &ok),
            new.clone(),
            |e| {
                matches!(
                    e,
                    UpdateError::Rejected {
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
                    ..Claims::version(4)
                },
            ),
            new.clone(),
            |e| rejected_with(e, ExtError::HwVersionFailure),
        ),
        (
            "unmet sd_req",
            init_packet(
                &k,
                &new,
                &Claims {
                    sd_req: vec![0xAE],
                    ..Claims::version(4)
                },
            ),
            new.clone(),
            |e| rejected_with(e, ExtError::SdVersionFailure),
        ),
        (
            "downgrade",
            init_packet(&k, &new, &Claims::version(2)),
            new.clone(),
            |e| rejected_with(e, ExtError::FwVersionFailure),
        ),
        (
            "image larger than the bank",
            init_packet(&k, &image(9 << 20, 1), &ok),
            image(9 << 20, 1),
            |e| rejected_with(e, ExtError::InsufficientSpace),
        ),
        (
            "image that does not match its hash",
            init_packet(&k, &new, &ok),
            image(16_000, 99),
            |e| rejected_with(e, ExtError::VerificationFailed),
        ),
    ];
    for (what, init, img, expected) in cases {
        let err = refused(&mut b, &init, &img, what, expected);
        assert!(!err.help().is_empty());
        reboot(&mut b);
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
    // Send the init packet and three objects (one write and 3 × 4 of 1 KiB),
    // then "unplug the cable".
    let mut link = BoardLink::new(&mut b);
    let _ = update_over(
        &mut FaultyLink::new(&mut link, LinkFault::FailAfter(3 * 4 + 1)),
        &init,
        &v1,
    );
    let (result, events) = update_over(&mut BoardLink::new(&mut b), &init, &v1);
    result.unwrap();
    assert!(
        events
            .iter()
            .any(|e| matches!(e, host::UpdateEvent::InitPacketSent { resumed: true })),
        "{events:?}"
    );
    assert!(
        events
            .iter()
            .any(|e| matches!(e, host::UpdateEvent::Resumed { offset } if *offset >= 2 * 4096)),
        "{events:?}"
    );
    settle(&mut b);
    assert_runs(&mut b, &v1, 1);
}

/// What a [`FaultyLink`] does to the host's WRITE requests.
enum LinkFault {
    /// Every WRITE after the first this many fails, like a pulled cable.
    FailAfter(u32),
    /// The n-th WRITE (from 1) has one byte flipped, like line noise the
    /// framing does not catch.
    CorruptNth(u32),
}

/// A board link that spoils the host's WRITEs as its [`LinkFault`] says.
struct FaultyLink<'a, 'b> {
    inner: &'a mut BoardLink<'b>,
    fault: LinkFault,
    /// WRITEs seen so far.
    writes: u32,
}

impl<'a, 'b> FaultyLink<'a, 'b> {
    fn new(inner: &'a mut BoardLink<'b>, fault: LinkFault) -> Self {
        FaultyLink {
            inner,
            fault,
            writes: 0,
        }
    }
}

impl Clock for FaultyLink<'_, '_> {
    fn now(&self) -> Instant {
        self.inner.now()
    }
    fn sleep(&mut self, d: Duration) {
        self.inner.sleep(d)
    }
}

impl host::SecureDfuLink for FaultyLink<'_, '_> {
    fn send(&mut self, req: &dfukit_nordic::proto::SecureDfuRequest<'_>) -> std::io::Result<()> {
        if let dfukit_nordic::proto::SecureDfuRequest::Write(data) = req {
            self.writes += 1;
            match self.fault {
                LinkFault::FailAfter(n) if self.writes > n => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::BrokenPipe,
                        "cable pulled",
                    ));
                }
                LinkFault::CorruptNth(n) if self.writes == n => {
                    let mut bad = data.to_vec();
                    bad[0] ^= 0x40;
                    return self
                        .inner
                        .send(&dfukit_nordic::proto::SecureDfuRequest::Write(&bad));
                }
                _ => {}
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

/// Runs the host over `link`; returns its result and the events it reported.
fn update_over(
    link: &mut dyn host::SecureDfuLink,
    init: &[u8],
    image: &[u8],
) -> (Result<(), UpdateError>, Vec<host::UpdateEvent>) {
    let mut events = Vec::new();
    let result = host::update(link, &opts(), init, image, &mut |e| events.push(e));
    (result, events)
}

#[test]
fn an_object_whose_crc_does_not_match_is_sent_again() {
    let k = key(7);
    let mut b = fresh(config(&k, Bank1::Qspi));
    let img = image(20_000, 50);
    let init = init_packet(&k, &img, &Claims::default());
    let mut link = BoardLink::new(&mut b);
    // Write 6 is in the second object (1 KiB writes, 4 per object).
    let mut noisy = FaultyLink::new(&mut link, LinkFault::CorruptNth(6));
    let (result, events) = update_over(&mut noisy, &init, &img);
    result.unwrap();
    let retries: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            host::UpdateEvent::Retry { object, reason } => Some((*object, reason.clone())),
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

/// A final object whose hash fails must not turn into "done" on a rerun.
#[test]
fn a_failed_validation_is_never_reported_as_success_later() {
    let v1 = image(8_192, 60);
    let (k, mut b) = qspi_board_running(8, &v1, 1);
    let good = image(8_192, 61);
    let init = init_packet(&k, &good, &Claims::version(2));
    let wrong = image(8_192, 62);
    for attempt in 0..2 {
        let what = format!("attempt {attempt}: hash must fail");
        refused(&mut b, &init, &wrong, &what, |e| {
            rejected_with(e, ExtError::VerificationFailed)
        });
    }
    assert!(!b.events().iter().any(
        |(_, e)| matches!(e, BootloaderEvent::Activated { size: 8_192, crc } if *crc != crc_of(&v1))
    ));
    assert_runs(&mut b, &v1, 1);
    // The right image still goes in afterwards.
    update_and_check(&mut b, &init, &good, 2);
}

#[test]
fn a_qspi_image_larger_than_bank0_is_refused() {
    let v1 = image(8_000, 70);
    let (k, mut b) = qspi_board_running(10, &v1, 1);
    // Fits in 8 MiB of QSPI, not in the 828 KiB application area of bank 0.
    let big = image(0xF5000 - 0x27000 + 5 * 4096, 71);
    let init = init_packet(&k, &big, &Claims::version(2));
    refused(&mut b, &init, &big, "larger than bank 0", |e| {
        rejected_with(e, ExtError::InsufficientSpace)
    });
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
    let mut b = fresh(cfg);
    let img = image(12_000, 80);
    let init = init_packet(&k, &img, &Claims::default());
    for prn in [4u16, 8, 32] {
        let err = run_with(&mut b, &UpdateOptions { prn, ..opts() }, &init, &img).unwrap_err();
        assert!(
            rejected_with(&err, ExtError::FlashCompletionTimeout),
            "prn {prn}: {err}"
        );
        reboot(&mut b);
    }
}

/// A host started while the board is still activating the previous update
/// connects once the bootloader is up, without reading stale answers.
#[test]
fn host_started_during_activation_connects_cleanly() {
    let k = key(12);
    let mut b = fresh(config(&k, Bank1::Qspi));
    let v1 = image(24_000, 90);
    run(&mut b, &init_packet(&k, &v1, &Claims::default()), &v1).unwrap();
    // No settle: the board is copying bank 1 into bank 0 right now (about
    // 0.8 s of flash time) and ignores the line meanwhile, as a real one does.
    let v2 = image(24_000, 91);
    let init = init_packet(&k, &v2, &Claims::version(2));
    let o = UpdateOptions {
        connect_timeout: Duration::from_secs(5),
        ..opts()
    };
    run_with(&mut b, &o, &init, &v2).unwrap();
    settle(&mut b);
    assert_runs(&mut b, &v2, 2);
}

/// A backup page torn by an earlier cut is rewritten at the next boot.
#[test]
fn a_torn_backup_page_is_repaired_at_boot() {
    let k = key(13);
    let cfg = config(&k, Bank1::Qspi);
    let v1 = image(8_000, 100);
    let (mut internal, qspi) = flash_with_v1(&cfg, &k, &v1);
    let main = internal[0xFF000..0xFF000 + 0x380].to_vec();
    // Half-erased backup page.
    internal[0xFE000..0xFE000 + 0x200].fill(0xFF);
    let mut b = booted_from(cfg, &internal, &qspi);
    let repaired = &b.memory().internal.contents()[0xFE000..0xFE000 + 0x380];
    assert_eq!(repaired, &main[..], "backup not rewritten from main");
    assert_runs(&mut b, &v1, 1);
}

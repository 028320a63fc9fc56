//! SoftDevice and bootloader updates on the simulated nRF52840: received
//! into bank 1, copied behind the MBR and into the bootloader region by
//! the MBR-style copy, resumed across power cuts, and followed by the
//! application that the new SoftDevice needs.

mod common;

use common::*;
use dfukit_nordic::bootloader::{BootloaderEvent, Mode, ResetReason, SoftDevice, SD_MAGIC};
use dfukit_nordic::host::{self, UpdateError};
use dfukit_nordic::init_packet::{FwType, InitCommand};
use dfukit_nordic::proto::ExtError;
use dfukit_sim::boards::nrf52840::{Bank1, BoardConfig, Nrf52840};
use dfukit_sim::links::serial::BoardLink;
use dfukit_sim::{Board, PowerCutPlan};
use p256::ecdsa::SigningKey;

const SD_START: usize = 0x1000;
const BL_START: usize = 0xF8000;
const OLD_SD: u32 = 0x0100;
const NEW_SD: u16 = 0x0123;

/// A SoftDevice image of `len` bytes whose information structure names
/// `fwid`, as the SDK's `SD_MAGIC_NUMBER_GET`/`SD_FWID_GET` read it.
fn softdevice(len: usize, fwid: u16, seed: u32) -> Vec<u8> {
    let mut sd = image(len, seed);
    let at = |off: u32| off as usize;
    sd[at(SoftDevice::MAGIC_OFFSET)..at(SoftDevice::MAGIC_OFFSET) + 4]
        .copy_from_slice(&SD_MAGIC.to_le_bytes());
    sd[at(SoftDevice::FWID_OFFSET)..at(SoftDevice::FWID_OFFSET) + 2]
        .copy_from_slice(&fwid.to_le_bytes());
    sd
}

/// A signed init packet for a SoftDevice and/or bootloader image, as
/// `nrfutil pkg generate` makes it: the SoftDevice part first, `fw_version`
/// the bootloader version.
fn sd_bl_init(k: &SigningKey, sd: &[u8], bl: &[u8], fw_version: u32, sd_req: u32) -> Vec<u8> {
    let fw_type = match (sd.is_empty(), bl.is_empty()) {
        (false, false) => FwType::SoftdeviceBootloader,
        (false, true) => FwType::Softdevice,
        _ => FwType::Bootloader,
    };
    let cmd = InitCommand {
        fw_version: Some(fw_version),
        hw_version: Some(52),
        sd_req: [sd_req].into_iter().collect(),
        fw_type: Some(fw_type),
        sd_size: Some(sd.len() as u32),
        bl_size: Some(bl.len() as u32),
        app_size: Some(0),
        hash: Some(image_hash(&[sd, bl].concat())),
        is_debug: Some(false),
        boot_validation: heapless::Vec::new(),
    };
    signed(k, &cmd)
}

fn send(b: &mut Nrf52840, init: &[u8], fw: &[u8]) -> Result<(), UpdateError> {
    host::update(&mut BoardLink::new(b), &opts(), init, fw, &mut |_| {})
}

/// A board trusting `k` with bank 1 where asked, running a 9 kB app as
/// version 1.
fn running_app(k: &SigningKey, bank1: Bank1) -> Nrf52840 {
    let mut b = fresh(config(k, bank1));
    let app = image(9_000, 1);
    send(&mut b, &init_packet(k, &app, &Claims::version(1)), &app).unwrap();
    settle(&mut b);
    assert_app(&mut b, &app);
    b
}

/// Lets the board activate and restart (into a new bootloader when there is
/// one) until it serves DFU again.
fn activate(b: &mut Nrf52840) {
    for _ in 0..3 {
        settle(b);
    }
    assert_eq!(b.mode(), Mode::Dfu);
}

fn assert_installed(b: &mut Nrf52840, sd: &[u8], bl: &[u8]) {
    let flash = b.memory().internal.contents();
    assert!(
        flash[SD_START..SD_START + sd.len()] == *sd,
        "SoftDevice region"
    );
    assert!(
        flash[BL_START..BL_START + bl.len()] == *bl,
        "bootloader region"
    );
    assert!(b.model_errors().is_empty(), "{:?}", b.model_errors());
}

fn sd_bl_then_app(bank1: Bank1) {
    let k = key(21);
    let mut b = running_app(&k, bank1);
    let boots = b.boots();
    let sd = softdevice(12 * 1024, NEW_SD, 2);
    let bl = image(6_000, 3);
    send(
        &mut b,
        &sd_bl_init(&k, &sd, &bl, 2, OLD_SD),
        &[&sd[..], &bl[..]].concat(),
    )
    .unwrap();
    activate(&mut b);
    assert_installed(&mut b, &sd, &bl);
    let ins = b.inspect();
    assert_eq!(ins.softdevice_fwid, Some(NEW_SD), "{ins:?}");
    assert_eq!(ins.bootloader_version, Some(2), "{ins:?}");
    assert_eq!(
        ins.bootloader_crc,
        crc_of(&b.memory().internal.contents()[BL_START..0xFE000])
    );
    // The app was built for the old SoftDevice: given up.
    assert!(!ins.app_valid, "{ins:?}");
    assert_eq!(ins.bank1_code, 0, "{ins:?}");
    // The MBR's bootloader copy ends in a reset into the new bootloader.
    let events: Vec<_> = b.events().iter().map(|(_, e)| *e).collect();
    assert!(events.contains(&BootloaderEvent::SoftDeviceActivated {
        fwid: NEW_SD,
        size: sd.len() as u32
    }));
    assert!(events.contains(&BootloaderEvent::BootloaderActivated {
        version: 2,
        size: bl.len() as u32
    }));
    assert!(events.contains(&BootloaderEvent::Reset(ResetReason::NewBootloader)));
    assert!(
        b.boots() >= boots + 2,
        "update reset and new-bootloader reset"
    );
    let report = <Nrf52840 as Board>::inspect(&mut b).to_string();
    assert!(report.contains("softdevice:  0x0123"), "{report}");
    assert!(report.contains("bootloader:  version 2"), "{report}");

    // An app for the old SoftDevice is refused, one for the new accepted.
    let app = image(30_000, 4);
    let old = Claims {
        fw_version: 3,
        sd_req: vec![OLD_SD],
        ..Claims::default()
    };
    let err = send(&mut b, &init_packet(&k, &app, &old), &app).unwrap_err();
    assert!(rejected_with(&err, ExtError::SdVersionFailure), "{err}");
    settle(&mut b);
    let new = Claims {
        fw_version: 3,
        sd_req: vec![NEW_SD as u32],
        ..Claims::default()
    };
    send(&mut b, &init_packet(&k, &app, &new), &app).unwrap();
    settle(&mut b);
    let ins = assert_app(&mut b, &app);
    assert_eq!(ins.app_version, 3);
    assert_installed(&mut b, &sd, &bl);
}

#[test]
fn softdevice_and_bootloader_then_app_through_qspi_bank() {
    sd_bl_then_app(Bank1::Qspi);
}

#[test]
fn softdevice_and_bootloader_then_app_through_internal_bank() {
    sd_bl_then_app(Bank1::Internal);
}

#[test]
fn softdevice_alone_changes_the_id_and_waits_for_an_app() {
    let k = key(22);
    let mut b = running_app(&k, Bank1::Internal);
    let sd = softdevice(16 * 1024, NEW_SD, 5);
    send(&mut b, &sd_bl_init(&k, &sd, &[], 1, OLD_SD), &sd).unwrap();
    activate(&mut b);
    let ins = b.inspect();
    assert_eq!(ins.softdevice_fwid, Some(NEW_SD));
    // No bootloader in the package: the build's stays, with no new reset.
    assert_eq!(ins.bootloader_version, Some(1));
    assert!(!ins.app_valid);
    assert!(b.memory().internal.contents()[SD_START..SD_START + sd.len()] == sd[..]);
    assert!(!b
        .events()
        .iter()
        .any(|(_, e)| *e == BootloaderEvent::Reset(ResetReason::NewBootloader)));
    // A second SoftDevice update must name the new one in sd_req.
    let err = send(&mut b, &sd_bl_init(&k, &sd, &[], 1, OLD_SD), &sd).unwrap_err();
    assert!(rejected_with(&err, ExtError::SdVersionFailure), "{err}");
}

#[test]
fn bootloader_alone_must_be_newer_and_keeps_the_app() {
    let k = key(23);
    let mut b = running_app(&k, Bank1::Qspi);
    let bl = image(8_192, 6);
    for v in [1, 0] {
        let err = send(&mut b, &sd_bl_init(&k, &[], &bl, v, OLD_SD), &bl).unwrap_err();
        assert!(
            rejected_with(&err, ExtError::FwVersionFailure),
            "version {v}: {err}"
        );
        settle(&mut b);
    }
    send(&mut b, &sd_bl_init(&k, &[], &bl, 5, OLD_SD), &bl).unwrap();
    activate(&mut b);
    let ins = b.inspect();
    assert_eq!(ins.bootloader_version, Some(5));
    assert_eq!(ins.softdevice_fwid, None, "no SoftDevice was written");
    assert!(
        ins.app_valid,
        "a bootloader update leaves a dual-bank app: {ins:?}"
    );
    assert!(b.memory().internal.contents()[BL_START..BL_START + bl.len()] == bl[..]);
    let err = send(&mut b, &sd_bl_init(&k, &[], &bl, 5, OLD_SD), &bl).unwrap_err();
    assert!(rejected_with(&err, ExtError::FwVersionFailure), "{err}");
}

#[test]
fn bad_softdevice_and_bootloader_packages_are_refused_before_any_copy() {
    let k = key(24);
    let mut b = running_app(&k, Bank1::Qspi);
    let before = b.memory().internal.contents().to_vec();
    let sd = softdevice(12 * 1024, NEW_SD, 7);
    let bl = image(4_096, 8);
    let whole = [&sd[..], &bl[..]].concat();
    let cases: Vec<(&str, Vec<u8>, Vec<u8>, ExtError)> = vec![
        (
            "sd_req names another SoftDevice",
            sd_bl_init(&k, &sd, &bl, 2, 0x00AE),
            whole.clone(),
            ExtError::SdVersionFailure,
        ),
        (
            "bootloader too large for its region",
            sd_bl_init(&k, &[], &image(0x7000, 9), 2, OLD_SD),
            image(0x7000, 9),
            ExtError::InsufficientSpace,
        ),
        (
            "SoftDevice larger than its region",
            sd_bl_init(&k, &softdevice(0x27000, NEW_SD, 1), &[], 2, OLD_SD),
            softdevice(0x27000, NEW_SD, 1),
            ExtError::InsufficientSpace,
        ),
        (
            "no SoftDevice information structure",
            sd_bl_init(&k, &image(12 * 1024, 10), &[], 2, OLD_SD),
            image(12 * 1024, 10),
            ExtError::VerificationFailed,
        ),
    ];
    for (what, init, fw, ext) in cases {
        let err = send(&mut b, &init, &fw).unwrap_err();
        assert!(rejected_with(&err, ext), "{what}: {err}");
        settle(&mut b);
    }
    let after = b.memory().internal.contents();
    assert!(
        after[..0x27000] == before[..0x27000],
        "MBR/SoftDevice region untouched"
    );
    assert!(
        after[BL_START..0xFE000] == before[BL_START..0xFE000],
        "bootloader region untouched"
    );
    assert!(b.inspect().app_valid);
}

/// Counts a clean SD+BL update's flash operations (transfer, SoftDevice
/// copy, bootloader copy, the settings writes between), then for every k
/// cuts power before operation k, restarts the board and checks that it
/// boots into DFU mode, and that resuming (the host resends what was not
/// received; the board resumes a started copy by itself) ends with both
/// images in place.
fn sd_bl_power_cut_sweep(bank1: Bank1) {
    let k = key(25);
    let cfg: BoardConfig = config(&k, bank1);
    let b0 = running_app(&k, bank1);
    let (internal, qspi) = (
        b0.memory().internal.contents().to_vec(),
        b0.memory().qspi.contents().to_vec(),
    );
    // Two SoftDevice copy steps (8 pages each) and a bootloader of two pages.
    let sd = softdevice(40 * 1024, NEW_SD, 11);
    let bl = image(6_000, 12);
    let init = sd_bl_init(&k, &sd, &bl, 2, OLD_SD);
    let whole = [&sd[..], &bl[..]].concat();

    let mut clean = booted_from(cfg.clone(), &internal, &qspi);
    clean.arm(PowerCutPlan::Never);
    send(&mut clean, &init, &whole).unwrap();
    let transfer = clean.power().ops();
    activate(&mut clean);
    assert_installed(&mut clean, &sd, &bl);
    let total = clean.power().ops();
    assert!(
        total > transfer + 8,
        "activation took {} flash operations",
        total - transfer
    );

    let done = |b: &mut Nrf52840| {
        let ins = b.inspect();
        ins.softdevice_fwid == Some(NEW_SD) && ins.bootloader_version == Some(2)
    };
    for n in 1..=total {
        let mut b = booted_from(cfg.clone(), &internal, &qspi);
        b.arm(PowerCutPlan::before(n));
        let _ = send(&mut b, &init, &whole);
        activate_or_cut(&mut b);
        assert!(!b.is_powered(), "cut {n} of {total} never fired");
        b.power_cycle(PowerCutPlan::Never);
        activate(&mut b);
        let ins = b.inspect();
        assert_ne!(ins.settings, "none", "cut at op {n}/{total}: settings lost");
        if !done(&mut b) {
            assert!(
                n <= transfer,
                "cut at op {n}/{total} (activation): not resumed: {ins:?}"
            );
            send(&mut b, &init, &whole)
                .unwrap_or_else(|e| panic!("cut at op {n}/{total}: resend failed: {e}"));
            activate(&mut b);
        }
        assert!(done(&mut b), "cut at op {n}/{total}: {:?}", b.inspect());
        assert_installed(&mut b, &sd, &bl);
    }
}

/// Lets the board run until it is done or its power is cut.
fn activate_or_cut(b: &mut Nrf52840) {
    for _ in 0..3 {
        settle(b);
        if !b.is_powered() {
            return;
        }
    }
}

#[test]
fn power_cut_before_every_flash_operation_of_an_sd_bl_update() {
    sd_bl_power_cut_sweep(Bank1::Qspi);
}

#[test]
fn power_cut_before_every_flash_operation_of_an_sd_bl_update_internal_bank() {
    sd_bl_power_cut_sweep(Bank1::Internal);
}

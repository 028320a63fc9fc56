//! The host driver drives the device core in-process (the embassy-usb-dfu +
//! dfu-core pattern), under virtual time, with a flash model that enforces
//! erase-before-write and completes operations after a delay.

mod common;

use common::{f4_host, f4_write, host_on, image, layout, FlashMode, Sim, F4_FLASH, F4_OPT};
use dfukit_core::Clock;
use dfukit_testkit::{Region, TestFlash};
use dfukit_usbdfu::device::{AltConfig, DeviceConfig, DeviceEvent, DeviceFlashTiming, Dialect};
use dfukit_usbdfu::dfuse::Command;
use dfukit_usbdfu::files::{DfuseFile, Element, Suffix, Target};
use dfukit_usbdfu::host::{DfuEvent, DfuHost, DfuHostError, DfuPhase, LeaveOutcome};
use dfukit_usbdfu::wire::DfuSetup;
use dfukit_usbdfu::wire::{DfuRequest, SetupPacket, State, Status};
use std::time::Duration;

#[test]
fn dfuse_download_and_upload_read_back_byte_exact() {
    let mut host = f4_host();
    // Something in a sector the image does not touch must survive.
    host.transport().flash.fill(0x0802_0000, &[0x12; 64]);
    let img = image(70_000, 1);
    let l = layout(F4_FLASH);
    let mut events = Vec::new();
    host.dfuse_download(&l, 0x0800_0000, &img, true, &mut |e| events.push(e))
        .unwrap();
    let back = host
        .dfuse_upload(&l, 0x0800_0000, img.len(), &mut |_| {})
        .unwrap();
    assert_eq!(back, img);
    let sim = host.transport();
    assert_eq!(sim.flash.bytes(0x0800_0000, img.len()), img);
    assert!(sim.flash.violations.is_empty());
    // Only the sectors the image touches were erased: 4×16K + the 64K one.
    let erased: Vec<u32> = sim.flash.erases.iter().map(|e| e.0).collect();
    assert_eq!(
        erased,
        [
            0x0800_0000,
            0x0800_4000,
            0x0800_8000,
            0x0800_C000,
            0x0801_0000
        ]
    );
    assert_eq!(sim.flash.bytes(0x0802_0000, 64), vec![0x12; 64]);
    // Progress: erase events, increasing download progress, verify at the end.
    assert_eq!(
        events
            .iter()
            .filter(|e| matches!(e, DfuEvent::Erase { .. }))
            .count(),
        5
    );
    assert!(events.contains(&DfuEvent::Download {
        done: 70_000,
        total: 70_000
    }));
    assert_eq!(
        events.last(),
        Some(&DfuEvent::Verify {
            done: 70_000,
            total: 70_000
        })
    );
    // One SET_ADDRESS, then consecutive blocks from 2 (the device maps block
    // n to pointer + (n - 2) * wTransferSize), and never a CLRSTATUS (the
    // device was never in dfuERROR).
    assert_eq!(sim.requests(DfuRequest::ClrStatus), 0);
    let data_blocks: Vec<u16> = sim
        .log
        .iter()
        .filter(|(s, _)| s.dfu_request() == Some(DfuRequest::Dnload) && s.value != 0)
        .map(|(s, _)| s.value)
        .collect();
    let n = 70_000usize.div_ceil(2048);
    assert_eq!(data_blocks, (2..2 + n as u16).collect::<Vec<_>>());
    // Block-0 commands are 5 bytes each: the erases of sectors 0-4, which
    // 70 000 bytes touch, a single Set Address Pointer for the 35 blocks, and
    // the one the verify sends before its first UPLOAD.
    let commands = sim
        .log
        .iter()
        .take_while(|(s, _)| s.dfu_request() != Some(DfuRequest::Upload))
        .filter(|(s, _)| {
            s.dfu_request() == Some(DfuRequest::Dnload) && s.value == 0 && s.length == 5
        })
        .count();
    assert_eq!(commands, 5 + 1 + 1);
}

#[test]
fn unaligned_upload_uses_fixed_transfer_size_mapping() {
    let mut host = f4_host();
    let img = image(5000, 2);
    host.transport().flash.fill(0x0800_4000, &img);
    let back = host
        .dfuse_upload(&layout(F4_FLASH), 0x0800_4000, 5000, &mut |_| {})
        .unwrap();
    // Chunks 2048, 2048, 904: the last, short one must come from +4096.
    assert_eq!(back, img);
}

#[test]
fn write_outside_writeable_regions_is_refused_before_touching_the_device() {
    let mut host = f4_host();
    let img = image(0x2_0000, 3);
    let err = f4_write(&mut host, 0x080F_0000, &img).unwrap_err();
    assert_eq!(
        err,
        DfuHostError::NotWriteable {
            address: 0x0810_0000,
            start: 0x080F_0000,
            end: 0x0811_0000
        }
    );
    assert!(err.to_string().contains("0x08100000"), "{err}");
    assert!(!err.help().is_empty());
    let sim = host.transport();
    assert!(sim.log.is_empty(), "no request may reach the device");
    assert!(sim.flash.erases.is_empty());

    // A read-only sector in the middle is refused too.
    let l = layout("@Mixed/0x08000000/01*016Kg,01*016Ka,02*016Kg");
    let err = host
        .dfuse_download(&l, 0x0800_0000, &image(0x8000, 4), false, &mut |_| {})
        .unwrap_err();
    assert!(matches!(
        err,
        DfuHostError::NotWriteable {
            address: 0x0800_4000,
            ..
        }
    ));
    assert!(host.transport().log.is_empty());
}

#[test]
fn device_refuses_out_of_map_write_from_a_careless_host() {
    // A host that skips the layout check gets dfuERROR/errTARGET (ST dialect).
    let mut host = f4_host();
    host.abort_to_idle().unwrap();
    host.dfuse_command(Command::SetAddress(0x080F_F800))
        .unwrap();
    let sim = host.transport();
    // Block 3 = pointer + 2048 = 0x08100000, outside the flash.
    let setup = SetupPacket::dfu(DfuRequest::Dnload, 3, 0, 16);
    use dfukit_usbdfu::host::ControlTransfer;
    sim.control_out(setup, &[0; 16], Duration::from_secs(1))
        .unwrap();
    let st = host.get_status().unwrap();
    assert_eq!((st.state, st.status), (State::DfuError, Status::ErrTarget));
    assert!(host.transport().flash.programs.is_empty());
    // The host recovers with CLRSTATUS, which is right in dfuERROR.
    assert_eq!(host.abort_to_idle().unwrap().state, State::DfuIdle);
}

#[test]
fn program_over_unerased_flash_is_never_issued() {
    let mut host = f4_host();
    host.transport().flash.fill(0x0800_0000, &[0; 16]);
    host.abort_to_idle().unwrap();
    host.dfuse_command(Command::SetAddress(0x0800_0000))
        .unwrap();
    use dfukit_usbdfu::host::ControlTransfer;
    let setup = SetupPacket::dfu(DfuRequest::Dnload, 2, 0, 32);
    host.transport()
        .control_out(setup, &[0x5A; 32], Duration::from_secs(1))
        .unwrap();
    let st = host.get_status().unwrap();
    assert_eq!(
        (st.state, st.status),
        (State::DfuError, Status::ErrCheckErased)
    );
    let sim = host.transport();
    assert!(sim.flash.programs.is_empty());
    assert!(sim.flash.violations.is_empty());
}

#[test]
fn mass_erase_erases_every_sector() {
    let mut host = f4_host();
    host.transport().flash.fill(0x0800_0000, &image(1024, 5));
    host.transport().flash.fill(0x080E_0000, &image(1024, 6));
    let mut events = Vec::new();
    host.dfuse_mass_erase(&mut |e| events.push(e)).unwrap();
    assert_eq!(events, [DfuEvent::MassErase]);
    let sim = host.transport();
    assert_eq!(sim.flash.erases.len(), 12);
    assert!(sim
        .flash
        .bytes(0x0800_0000, 1024 * 1024)
        .iter()
        .all(|&b| b == 0xFF));
    // 1 MiB at 8 ms/KiB took about 8 s of virtual time.
    assert!(sim.now.as_micros() >= 8_000_000, "{}", sim.now);
    assert_eq!(host.get_state().unwrap(), State::DfuDnloadIdle);
}

#[test]
fn busy_status_reports_remaining_flash_work() {
    let mut host = f4_host();
    host.abort_to_idle().unwrap();
    use dfukit_usbdfu::host::ControlTransfer;
    let mut buf = [0; 5];
    let cmd = Command::Erase(0x0802_0000).encode(&mut buf).to_vec();
    host.transport()
        .control_out(
            SetupPacket::dfu(DfuRequest::Dnload, 0, 0, 5),
            &cmd,
            Duration::from_secs(1),
        )
        .unwrap();
    let st = host.get_status().unwrap();
    assert_eq!(st.state, State::DfuDnbusy);
    // A 128 KiB sector at 8 ms/KiB: 1024 ms.
    assert_eq!(st.poll_timeout_ms, 1024);
    host.transport().sleep(Duration::from_millis(500));
    let st = host.get_status().unwrap();
    assert_eq!(st.state, State::DfuDnbusy);
    assert!(
        (520..=524).contains(&st.poll_timeout_ms),
        "{}",
        st.poll_timeout_ms
    );
    host.transport()
        .sleep(Duration::from_millis(st.poll_timeout_ms.into()));
    let st = host.get_status().unwrap();
    assert_eq!(st.state, State::DfuDnloadIdle);
}

#[test]
fn leave_with_st_rom_dialect() {
    let mut host = f4_host();
    let img = image(3000, 7);
    f4_write(&mut host, 0x0800_0000, &img).unwrap();
    let out = host.dfuse_leave(Some(0x0800_0000)).unwrap();
    assert_eq!(out, LeaveOutcome::Manifesting);
    let sim = host.transport();
    assert!(sim.events.contains(&DeviceEvent::Leave {
        address: 0x0800_0000
    }));
    assert!(sim.gone);
    // The device is gone; the next request fails as a disconnect.
    let err = host.get_status().unwrap_err();
    assert!(matches!(
        err,
        DfuHostError::Transfer {
            phase: DfuPhase::Setup,
            ..
        }
    ));
}

#[test]
fn leave_tolerates_a_device_that_resets_before_answering() {
    let mut host = f4_host();
    host.transport().vanish_on_leave = true;
    let out = host.dfuse_leave(Some(0x0800_0000)).unwrap();
    assert_eq!(out, LeaveOutcome::Disconnected);
}

#[test]
fn get_commands_st_rom() {
    let mut host = f4_host();
    assert_eq!(host.dfuse_get_commands().unwrap(), [0x00, 0x21, 0x41, 0x92]);
}

#[test]
fn option_bytes_alt_upload_and_write() {
    let mut host = f4_host();
    host.set_alt(1).unwrap();
    let l = layout(F4_OPT);
    let ob = host.dfuse_upload(&l, 0x1FFF_C000, 16, &mut |_| {}).unwrap();
    assert_eq!(&ob[..4], &[0xAA, 0x55, 0xFF, 0x0F]);
    // Not erasable, writeable: no erase is sent, the write goes through.
    let new = [
        0xAA, 0x55, 0xFF, 0x0F, 0xFF, 0x00, 0xFF, 0x00, 0xAA, 0x55, 0xFF, 0x0F, 0, 0, 0, 0,
    ];
    host.dfuse_download(&l, 0x1FFF_C000, &new, true, &mut |_| {})
        .unwrap();
    assert!(host.transport().flash.erases.is_empty());
    assert_eq!(host.transport().flash.bytes(0x1FFF_C000, 16), new);
    // Erasing it by command is errTARGET.
    let err = host.dfuse_command(Command::Erase(0x1FFF_C000)).unwrap_err();
    assert!(matches!(
        err,
        DfuHostError::Device {
            status: Status::ErrTarget,
            phase: DfuPhase::Erase,
            address: Some(0x1FFF_C000),
            ..
        }
    ));
    assert!(err.to_string().contains("0x1fffc000"), "{err}");
}

#[test]
fn dfuse_file_download() {
    let mut host = f4_host();
    let a = image(4000, 8);
    let b = image(100, 9);
    let file = DfuseFile {
        targets: vec![Target {
            alt: 0,
            name: Some("ST...".into()),
            elements: vec![
                Element {
                    address: 0x0800_0000,
                    data: a.clone(),
                },
                Element {
                    address: 0x0802_0000,
                    data: b.clone(),
                },
            ],
        }],
        suffix: Suffix::default(),
    };
    let bytes = file.to_bytes().unwrap();
    let file = DfuseFile::parse(&bytes).unwrap();
    let mut targets = Vec::new();
    host.dfuse_download_file(
        &file,
        &|alt| match alt {
            0 => Some(layout(F4_FLASH)),
            _ => None,
        },
        true,
        &mut |e| {
            if let DfuEvent::Target { alt, .. } = e {
                targets.push(alt)
            }
        },
    )
    .unwrap();
    assert_eq!(targets, [0]);
    let sim = host.transport();
    assert_eq!(sim.flash.bytes(0x0800_0000, a.len()), a);
    assert_eq!(sim.flash.bytes(0x0802_0000, b.len()), b);
    assert_eq!(sim.flash.erases.len(), 2);

    // A file for an alt without a layout is refused before anything is sent.
    let mut host = f4_host();
    let mut f2 = file.clone();
    f2.targets[0].alt = 3;
    let err = host
        .dfuse_download_file(&f2, &|_| None, false, &mut |_| {})
        .unwrap_err();
    assert_eq!(err, DfuHostError::NoLayout { alt: 3 });
    assert!(host.transport().log.is_empty());
}

fn uboot_sim() -> Sim {
    plain_sim(Dialect::U_BOOT)
}

fn plain_sim(dialect: Dialect) -> Sim {
    let mut alts = heapless::Vec::new();
    alts.push(AltConfig::from_layout("@Flash /0x00100000/16*4Kg").unwrap())
        .unwrap();
    let cfg = DeviceConfig {
        dialect,
        interface: 0,
        transfer_size: 4096,
        detach_timeout_ms: 0,
        alts,
        timing: DeviceFlashTiming::STM32F4,
        flash_timeout: Duration::from_secs(5),
        default_address: 0x0010_0000,
    };
    let flash = TestFlash::new(vec![Region::nor(0x0010_0000, 64 * 1024)]).recording();
    Sim::new(cfg, flash)
}

/// A plain DFU download, reported through manifestation to its end.
fn download_through_manifestation(host: &mut DfuHost<Sim>, img: &[u8]) {
    let mut events = Vec::new();
    host.download(img, &mut |e| events.push(e)).unwrap();
    assert!(events.contains(&DfuEvent::Manifesting));
    assert_eq!(events.last(), Some(&DfuEvent::Manifested));
}

#[test]
fn dfu11_download_with_manifestation_and_upload() {
    let mut host = host_on(uboot_sim());
    let desc = host.descriptor();
    assert!(desc.manifestation_tolerant() && !desc.is_dfuse());
    // Pre-existing content is erased sector by sector as the download advances.
    host.transport().flash.fill(0x0010_0000, &[0; 32]);
    let img = image(10_000, 10);
    download_through_manifestation(&mut host, &img);
    let sim = host.transport();
    assert!(sim.events.contains(&DeviceEvent::Manifested));
    assert_eq!(sim.dev.state(), State::DfuIdle);
    assert!(sim.flash.violations.is_empty());
    let erased: Vec<u32> = sim.flash.erases.iter().map(|e| e.0).collect();
    assert_eq!(erased, [0x0010_0000, 0x0010_1000, 0x0010_2000]);
    let blocks: Vec<u16> = sim
        .log
        .iter()
        .filter(|(s, _)| s.dfu_request() == Some(DfuRequest::Dnload))
        .map(|(s, _)| s.value)
        .collect();
    assert_eq!(blocks, [0, 1, 2, 3]);

    let back = host.upload(None, &mut |_| {}).unwrap();
    assert_eq!(back.len(), 64 * 1024);
    assert_eq!(&back[..img.len()], &img[..]);
    let part = host.upload(Some(5000), &mut |_| {}).unwrap();
    assert_eq!(part, img[..5000]);
    assert_eq!(host.get_state().unwrap(), State::DfuIdle);
}

/// A plain DFU device that is not manifestation tolerant: the host polls
/// through dfuMANIFEST until the device stops answering in
/// dfuMANIFEST-WAIT-RESET, rather than declaring success at the first poll.
#[test]
fn dfu11_non_tolerant_manifestation_runs_to_wait_reset() {
    let dialect = Dialect {
        manifestation_tolerant: false,
        will_detach: false,
        ..Dialect::U_BOOT
    };
    let mut host = host_on(plain_sim(dialect));
    assert!(!host.descriptor().manifestation_tolerant());
    let img = image(6_000, 12);
    download_through_manifestation(&mut host, &img);
    let sim = host.transport();
    assert_eq!(sim.dev.state(), State::DfuManifestWaitReset);
    assert_eq!(sim.flash.bytes(0x0010_0000, img.len()), img);
}

#[test]
fn detach_reports_whether_a_reset_is_needed() {
    let mut host = host_on(uboot_sim());
    let out = host.detach().unwrap();
    assert!(!out.needs_usb_reset);
    assert!(host
        .transport()
        .events
        .contains(&DeviceEvent::Detach { timeout_ms: 0 }));
}

#[test]
fn clrstatus_outside_error_trap() {
    // A naive host (dfu-libusb#4) sends CLRSTATUS to an idle ST device.
    let mut host = f4_host();
    host.clear_status().unwrap();
    let st = host.get_status().unwrap();
    assert_eq!((st.state, st.status), (State::DfuError, Status::ErrUnknown));

    // Ours only clears in dfuERROR: a fresh device stays idle, and a download works.
    let mut host = f4_host();
    let st = host.abort_to_idle().unwrap();
    assert_eq!((st.state, st.status), (State::DfuIdle, Status::Ok));
    host.dfuse_download(
        &layout(F4_FLASH),
        0x0800_0000,
        &image(100, 11),
        true,
        &mut |_| {},
    )
    .unwrap();
    assert_eq!(host.transport().requests(DfuRequest::ClrStatus), 0);

    // U-Boot tolerates it.
    let mut host = host_on(uboot_sim());
    host.clear_status().unwrap();
    assert_eq!(host.get_status().unwrap().state, State::DfuIdle);
}

/// Writes 10 bytes at `address` to an F4 whose flash behaves as `mode`;
/// the write must fail.
fn f4_write_failing(mode: FlashMode, address: u32, seed: u32) -> (DfuHost<Sim>, DfuHostError) {
    let mut host = f4_host();
    host.transport().mode = mode;
    let err = f4_write(&mut host, address, &image(10, seed)).unwrap_err();
    (host, err)
}

#[test]
fn flash_failure_is_reported_with_address() {
    let (_, err) = f4_write_failing(FlashMode::Fail, 0x0800_4000, 12);
    assert_eq!(
        err,
        DfuHostError::Device {
            phase: DfuPhase::Erase,
            state: State::DfuError,
            status: Status::ErrErase,
            address: Some(0x0800_4000)
        }
    );
    assert!(err.to_string().contains("errERASE"), "{err}");
}

#[test]
fn flash_completion_that_never_comes_ends_in_an_error_not_a_hang() {
    let (mut host, err) = f4_write_failing(FlashMode::Hang, 0x0800_0000, 13);
    assert!(
        matches!(
            err,
            DfuHostError::Device {
                status: Status::ErrErase,
                ..
            }
        ),
        "{err}"
    );
    // The device gave up at its 10 s flash deadline (virtual time).
    assert!(host.transport().now.as_micros() >= 10_000_000);
    assert!(matches!(
        host.transport().dev.fault(),
        Some(dfukit_usbdfu::device::DfuFlashFault::Timeout { addr: 0x0800_0000 })
    ));
}

//! The DfuSe download policy (`DfuHost::dfuse_download_job`) against the
//! in-process STM32F4 ROM: it sends what `dfukit usb download` sends today,
//! and checks everything before the first request.

mod common;

use common::{f4_host, f4_layouts, image, Sim};
use dfukit_usbdfu::device::DeviceEvent;
use dfukit_usbdfu::files::{DfuseFile, Element, Suffix, Target};
use dfukit_usbdfu::host::{
    DfuEvent, DfuHost, DfuHostError, DfuseDownload, DfuseImage, LeaveOutcome,
};
use dfukit_usbdfu::wire::{DfuRequest, DfuSetup};

/// A raw image for the flash alt (0).
fn raw(address: u32, data: &[u8]) -> DfuseImage<'_> {
    DfuseImage::Raw {
        alt: 0,
        address,
        data,
    }
}

/// Writes `image`, verifies it and leaves.
fn leaving(image: DfuseImage<'_>) -> DfuseDownload<'_> {
    DfuseDownload {
        image,
        mass_erase: false,
        verify: true,
        leave: true,
    }
}

/// What `dfukit usb download` (crates/dfukit/src/cli/usb.rs) does today,
/// call by call: mass erase, then the raw or `.dfu` download, then leave.
fn cli_download(
    host: &mut DfuHost<Sim>,
    job: &DfuseDownload<'_>,
    events: &mut dyn FnMut(DfuEvent),
) -> Option<LeaveOutcome> {
    if job.mass_erase {
        host.dfuse_mass_erase(events).unwrap();
    }
    let leave_to = match job.image {
        DfuseImage::Raw { alt, address, data } => {
            let l = f4_layouts(alt).unwrap();
            host.dfuse_download(&l, address, data, job.verify, events)
                .unwrap();
            Some(address)
        }
        DfuseImage::File(file) => {
            host.dfuse_download_file(file, &f4_layouts, job.verify, events)
                .unwrap();
            // Leave goes to the first element of the first target, on its alt.
            let first = &file.targets[0];
            if job.leave && file.targets.last().map(|t| t.alt) != Some(first.alt) {
                host.set_alt(first.alt).unwrap();
            }
            Some(first.elements[0].address)
        }
    };
    job.leave.then(|| host.dfuse_leave(leave_to).unwrap())
}

/// Runs `job` through the library call and through the CLI's calls on two
/// fresh devices; both must send the same requests, report the same
/// events and leave the same flash. Returns the library run's host.
fn same_as_cli(job: &DfuseDownload<'_>) -> (DfuHost<Sim>, Vec<DfuEvent>) {
    let (mut lib, mut cli) = (f4_host(), f4_host());
    let (mut lib_events, mut cli_events) = (Vec::new(), Vec::new());
    let out = lib
        .dfuse_download_job(job, &f4_layouts, &mut |e| lib_events.push(e))
        .unwrap();
    let expected = cli_download(&mut cli, job, &mut |e| cli_events.push(e));
    assert_eq!(out, expected);
    assert_eq!(lib_events, cli_events);
    let (l, c) = (lib.transport(), cli.transport());
    assert_eq!(l.log, c.log, "the same requests in the same order");
    assert_eq!(l.flash.erases, c.flash.erases);
    assert_eq!(l.flash.programs, c.flash.programs);
    assert_eq!(l.events, c.events);
    (lib, lib_events)
}

#[test]
fn raw_image_with_mass_erase_verify_and_leave() {
    let img = image(40_000, 21);
    let job = DfuseDownload {
        mass_erase: true,
        ..leaving(raw(0x0800_0000, &img))
    };
    // After the mass erase no sector is erased again (the CLI's old call
    // sequence did erase them, so this job runs alone).
    let mut host = f4_host();
    let mut events = Vec::new();
    host.dfuse_download_job(&job, &f4_layouts, &mut |e| events.push(e))
        .unwrap();
    assert!(!events.iter().any(|e| matches!(e, DfuEvent::Erase { .. })));
    assert_eq!(events.first(), Some(&DfuEvent::MassErase));
    assert_eq!(
        events.last(),
        Some(&DfuEvent::Verify {
            done: 40_000,
            total: 40_000
        })
    );
    let sim = host.transport();
    assert_eq!(sim.flash.bytes(0x0800_0000, img.len()), img);
    assert!(sim.flash.violations.is_empty());
    assert_eq!(
        sim.events.last(),
        Some(&DeviceEvent::Leave {
            address: 0x0800_0000
        })
    );
    // The mass erase is the first command, the leave request the last one.
    let dnloads: Vec<_> = sim
        .log
        .iter()
        .filter(|(s, _)| s.dfu_request() == Some(DfuRequest::Dnload))
        .map(|(s, _)| (s.value, s.length))
        .collect();
    assert_eq!(dnloads.first(), Some(&(0, 1)));
    assert_eq!(dnloads.last(), Some(&(2, 0)));
}

#[test]
fn dfu_file_targets_share_one_erase_plan_and_verify_after_the_last_write() {
    let (a, b, opt) = (image(300, 22), image(200, 23), image(16, 24));
    let file = DfuseFile {
        targets: vec![
            Target {
                alt: 0,
                name: Some("flash".into()),
                // Both elements sit in the first 16 KiB sector.
                elements: vec![
                    Element {
                        address: 0x0800_0000,
                        data: a.clone(),
                    },
                    Element {
                        address: 0x0800_1000,
                        data: b.clone(),
                    },
                ],
            },
            Target {
                alt: 1,
                name: None,
                elements: vec![Element {
                    address: 0x1FFF_C000,
                    data: opt.clone(),
                }],
            },
        ],
        suffix: Suffix::default(),
    };
    let job = leaving(DfuseImage::File(&file));
    let (mut host, events) = same_as_cli(&job);
    let targets: Vec<u8> = events
        .iter()
        .filter_map(|e| match e {
            DfuEvent::Target { alt, .. } => Some(*alt),
            _ => None,
        })
        .collect();
    assert_eq!(targets, [0, 1]);
    // Verifies of a target follow all of its writes.
    let first_verify = events
        .iter()
        .position(|e| matches!(e, DfuEvent::Verify { .. }))
        .unwrap();
    let second_target = events
        .iter()
        .position(|e| matches!(e, DfuEvent::Target { alt: 1, .. }))
        .unwrap();
    let last_write = events[..second_target]
        .iter()
        .rposition(|e| matches!(e, DfuEvent::Download { .. }))
        .unwrap();
    assert!(first_verify > last_write);
    let sim = host.transport();
    assert_eq!(sim.flash.erases, [(0x0800_0000, 0x4000)]);
    assert_eq!(sim.flash.bytes(0x0800_0000, a.len()), a);
    assert_eq!(sim.flash.bytes(0x0800_1000, b.len()), b);
    assert_eq!(sim.flash.bytes(0x1FFF_C000, opt.len()), opt);
    // `:leave` jumps to the first element of the first target.
    assert_eq!(
        sim.events.last(),
        Some(&DeviceEvent::Leave {
            address: 0x0800_0000
        })
    );
}

#[test]
fn an_empty_raw_image_only_leaves() {
    let job = leaving(raw(0x0800_0000, &[]));
    let (mut host, events) = same_as_cli(&job);
    assert!(events.is_empty());
    assert!(host.transport().flash.erases.is_empty());
}

#[test]
fn nothing_is_sent_unless_every_check_passes() {
    // The CLI mass-erases before it finds out that the image does not fit;
    // the library refuses first.
    let img = image(0x2_0000, 25);
    let job = DfuseDownload {
        mass_erase: true,
        verify: false,
        ..leaving(raw(0x080F_0000, &img))
    };
    let mut host = f4_host();
    let err = host
        .dfuse_download_job(&job, &f4_layouts, &mut |_| {})
        .unwrap_err();
    assert!(
        matches!(
            err,
            DfuHostError::NotWriteable {
                address: 0x0810_0000,
                ..
            }
        ),
        "{err}"
    );
    assert!(host.transport().log.is_empty());

    // An alt without a memory layout, for a raw image or a file's target.
    let job = DfuseDownload {
        image: DfuseImage::Raw {
            alt: 5,
            address: 0x0800_0000,
            data: &img,
        },
        ..job
    };
    let err = host
        .dfuse_download_job(&job, &f4_layouts, &mut |_| {})
        .unwrap_err();
    assert_eq!(err, DfuHostError::NoLayout { alt: 5 });
    let file = DfuseFile {
        targets: vec![
            Target {
                alt: 0,
                name: None,
                elements: vec![Element {
                    address: 0x0800_0000,
                    data: img.clone(),
                }],
            },
            Target {
                alt: 3,
                name: None,
                elements: vec![],
            },
        ],
        suffix: Suffix::default(),
    };
    let job = DfuseDownload {
        image: DfuseImage::File(&file),
        ..job
    };
    let err = host
        .dfuse_download_job(&job, &f4_layouts, &mut |_| {})
        .unwrap_err();
    assert_eq!(err, DfuHostError::NoLayout { alt: 3 });
    assert!(host.transport().log.is_empty());
}

/// A `.dfu` download, like a raw one, needs bitCanDnload; and DfuSe
/// requests (`:leave`, `:mass-erase`) to a plain DFU 1.1 device are refused.
/// In both cases nothing reaches the device.
#[test]
fn dfuse_requests_need_a_device_that_takes_them() {
    let file = DfuseFile {
        targets: vec![Target {
            alt: 0,
            name: None,
            elements: vec![Element {
                address: 0x0800_0000,
                data: image(100, 30),
            }],
        }],
        suffix: Suffix::default(),
    };
    let job = leaving(DfuseImage::File(&file));
    let sim = Sim::stm32f4();
    let mut desc = sim.dev.functional_descriptor();
    desc.attributes &= !dfukit_usbdfu::wire::ATTR_CAN_DNLOAD;
    let mut host = DfuHost::new(sim, 0, desc, dfukit_usbdfu::host::DfuOptions::default());
    let err = host
        .dfuse_download_job(&job, &f4_layouts, &mut |_| {})
        .unwrap_err();
    assert_eq!(err, DfuHostError::Unsupported { what: "download" });
    assert!(host.transport().log.is_empty());

    let sim = Sim::stm32f4();
    let mut desc = sim.dev.functional_descriptor();
    desc.dfu_version = 0x0110;
    let mut host = DfuHost::new(sim, 0, desc, dfukit_usbdfu::host::DfuOptions::default());
    let err = host.dfuse_leave(None).unwrap_err();
    assert_eq!(err, DfuHostError::NotDfuse { request: ":leave" });
    assert_eq!(err.code(), "dfukit::usbdfu::not_dfuse");
    let err = host.dfuse_mass_erase(&mut |_| {}).unwrap_err();
    assert_eq!(
        err,
        DfuHostError::NotDfuse {
            request: ":mass-erase"
        }
    );
    assert!(host.transport().log.is_empty());
}

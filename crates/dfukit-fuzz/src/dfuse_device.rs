//! The DFU/DfuSe device core (`dfukit_usbdfu::DfuDevice`, the simulated STM32F4 ROM) fed an
//! arbitrary sequence of host requests, flash completions, time steps, bus resets and alt
//! changes, over a test flash that panics on a program over unerased bytes.
//!
//! What must hold whatever the host sends: no panic; every flash operation the core hands
//! out lies in mapped memory, and a program only ever lands on erased bytes (the core
//! blank-checks before it programs); an IN reply never claims more bytes than were asked.

use crate::script::{Input, Pending};
use dfukit_core::{FlashOutcome, Instant};
use dfukit_testkit::flash::TestFlash;
use dfukit_usbdfu::device::Reply;
use dfukit_usbdfu::wire::{DfuRequest, DfuSetup, SetupPacket};
use dfukit_usbdfu::{DeviceConfig, DfuDevice};

/// The target body (see the module documentation).
pub fn dfuse_device(data: &[u8]) {
    run(data);
}

/// Runs the sequence `data` encodes; returns how many programs reached the flash, so that
/// the corpus test can check its seeds get that far.
pub fn run(data: &[u8]) -> usize {
    let mut programmed = 0;
    let mut input = Input::new(data);
    let mut dev = DfuDevice::new(DeviceConfig::stm32f4_rom()).expect("the ROM config is valid");
    let mut flash = TestFlash::stm32f4();
    let mut now = Instant::ZERO;
    let mut pending: Option<Pending> = None;
    // A bound on steps, not on input: zeros after the end would run forever otherwise.
    for _ in 0..data.len().min(4096) {
        match input.byte() % 8 {
            0 => {
                let request = input.byte() % 7;
                let value = input.u16();
                let len = usize::from(input.byte()) * 9;
                let setup = SetupPacket::dfu(
                    DfuRequest::from_u8(request).expect("0..7 are DFU requests"),
                    value,
                    0,
                    len as u16,
                );
                let out = if setup.is_in() {
                    Vec::new()
                } else {
                    input.bytes(len)
                };
                control(&mut dev, now, &setup, &out, &mut flash);
            }
            1 => {
                let setup = SetupPacket::dfu(DfuRequest::GetStatus, 0, 0, 6);
                control(&mut dev, now, &setup, &[], &mut flash);
            }
            2 => {
                let failed = input.byte() & 1 == 1;
                if let Some(op) = pending.take() {
                    if !failed {
                        programmed += usize::from(op.apply(&mut flash));
                    }
                    let outcome = if failed {
                        FlashOutcome::Failed
                    } else {
                        FlashOutcome::Done
                    };
                    dev.flash_complete(now, outcome);
                }
            }
            3 => {
                now = Instant::from_micros(now.as_micros() + u64::from(input.byte()) * 1000);
                dev.poll(now, &mut flash);
            }
            4 => dev.usb_reset(now),
            5 => {
                let _ = dev.select_alt(input.byte() % 3);
            }
            6 => {
                let raw = input.bytes(8);
                let setup = SetupPacket::from_slice(&raw).expect("8 bytes");
                let len = usize::from(setup.length.min(4096));
                let out = if setup.is_in() {
                    Vec::new()
                } else {
                    input.bytes(len)
                };
                control(&mut dev, now, &setup, &out, &mut flash);
            }
            _ => {
                // A DfuSe command (set address, erase, read unprotect) at an address in or
                // near the flash, so that the fuzzer reaches erases and programs quickly.
                let cmd = [0x21, 0x41, 0x92, 0x41][usize::from(input.byte() % 4)];
                let addr = 0x0800_0000u32.wrapping_add(u32::from(input.u16()) << 8);
                let mut bytes = vec![cmd];
                if cmd != 0x92 {
                    bytes.extend_from_slice(&addr.to_le_bytes());
                }
                let setup = SetupPacket::dfu(DfuRequest::Dnload, 0, 0, bytes.len() as u16);
                control(&mut dev, now, &setup, &bytes, &mut flash);
            }
        }
        if pending.is_none() {
            pending = dev.poll_flash().map(Pending::of);
        }
        while dev.poll_event().is_some() {}
    }
    programmed
}

fn control(
    dev: &mut DfuDevice,
    now: Instant,
    setup: &SetupPacket,
    out: &[u8],
    flash: &mut TestFlash,
) {
    let mut reply = vec![0u8; usize::from(setup.length)];
    if let Reply::In(n) = dev.control(now, setup, out, &mut reply, flash) {
        assert!(
            n <= reply.len(),
            "IN reply of {n} bytes to a request for {}",
            reply.len()
        );
    }
}

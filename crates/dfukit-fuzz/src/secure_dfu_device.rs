//! The Nordic Secure DFU bootloader core (`dfukit_nordic::bootloader`, the simulated
//! nRF52840) fed arbitrary request frames over serial and BLE, flash completions and
//! failures, time steps and resets, with bank 1 internal or on the QSPI NOR, over a test flash
//! that panics on a program over unerased bytes.
//!
//! What must hold whatever the host sends: no panic; every flash operation lies in mapped
//! memory and programs only erased bytes; and, with a public key configured, nothing is ever
//! activated or started. The fuzzer holds no private key, and the one signed init packet in
//! its seeds (made by nrfutil with the example key) names by SHA-256 an image the fuzzer does
//! not have: an image that got that far would be one nobody signed.

use crate::script::{Input, Pending};
use dfukit_core::{FlashOutcome, Instant};
use dfukit_nordic::bootloader::{
    Bank1Location, Bootloader, BootloaderConfig, BootloaderEvent, EnterDfu, Mode, ResetReason,
    RxTransport,
};
use dfukit_testkit::flash::TestFlash;

/// The example key's public half: the key the device trusts in signed runs.
fn public_key() -> dfukit_nordic::bootloader::VerifyingKey {
    let pem = include_str!("../../../examples/nordic/key.pem");
    let key = dfukit_nordic::package::keys::from_pem(pem).expect("the example key parses");
    *key.verifying_key()
}

/// Frames the host sends most, so that the fuzzer reaches objects and writes quickly.
fn common_frame(input: &mut Input<'_>) -> Vec<u8> {
    match input.byte() % 8 {
        0 => vec![0x06, 1 + input.byte() % 2], // SELECT command / data
        1 => {
            let mut f = vec![0x01, 1 + input.byte() % 2]; // CREATE command / data
            f.extend_from_slice(&u32::from(input.u16() % 4097).to_le_bytes());
            f
        }
        2 => {
            let n = usize::from(input.byte() % 64);
            let mut f = vec![0x08]; // WRITE
            f.extend(input.bytes(n));
            f
        }
        3 => vec![0x03],                  // CRC_GET
        4 => vec![0x04],                  // EXECUTE
        5 => vec![0x02, input.byte(), 0], // PRN
        6 => vec![0x09, input.byte()],    // PING
        _ => vec![0x07],                  // MTU_GET
    }
}

/// Starts the core on `flash` and runs its boot sequence to the end, every flash operation
/// completing: the fuzzer spends its inputs on the update protocol, not on waiting for boot.
/// A boot that activates something is checked like any other event, by the caller's loop.
fn boot(cfg: &BootloaderConfig, flash: &mut TestFlash, now: &mut Instant) -> Bootloader {
    let mut dev = Bootloader::new(cfg.clone());
    for _ in 0..10_000 {
        dev.poll(*now, flash);
        if let Some(op) = dev.poll_flash() {
            Pending::of(op).apply(flash);
            dev.flash_complete(*now, FlashOutcome::Done);
        } else if dev.mode() == Mode::Dfu {
            break;
        } else {
            *now = Instant::from_micros(now.as_micros() + 1_000);
        }
    }
    dev
}

/// The target body (see the module documentation).
pub fn secure_dfu_device(data: &[u8]) {
    run(data);
}

/// Runs the script `data` encodes; returns how many of the script's flash operations (not
/// the boot sequence's) completed, so that the corpus test can check its seeds reach the
/// flash.
pub fn run(data: &[u8]) -> usize {
    let mut completed = 0;
    let mut input = Input::new(data);
    let mode = input.byte();
    let signed = mode & 1 == 1;
    let bank1 = if mode & 2 == 2 {
        Bank1Location::External(BootloaderConfig::MX25R6435F_BANK)
    } else {
        Bank1Location::Internal
    };
    let mut cfg = BootloaderConfig::nrf52840(signed.then(public_key), bank1);
    cfg.enter_dfu = EnterDfu::Always;
    let mut flash = TestFlash::nrf52840_with_qspi();
    let mut now = Instant::ZERO;
    let mut dev = boot(&cfg, &mut flash, &mut now);
    let mut pending: Option<Pending> = None;
    for _ in 0..data.len().min(4096) {
        match input.byte() % 6 {
            0 => {
                let n = usize::from(input.byte());
                let frame = input.bytes(n);
                let transport = if input.byte() & 1 == 0 {
                    RxTransport::Serial
                } else {
                    RxTransport::Ble
                };
                let _ = dev.handle_request(now, transport, &frame);
            }
            1 => {
                let frame = common_frame(&mut input);
                let _ = dev.handle_request(now, RxTransport::Serial, &frame);
            }
            2 => {
                let failed = input.byte() & 1 == 1;
                if let Some(op) = pending.take() {
                    if !failed {
                        op.apply(&mut flash);
                        completed += 1;
                    }
                    let outcome = if failed {
                        FlashOutcome::Failed
                    } else {
                        FlashOutcome::Done
                    };
                    dev.flash_complete(now, outcome);
                }
            }
            3 => now = Instant::from_micros(now.as_micros() + u64::from(input.byte()) * 10_000),
            4 => {
                // A power cut: whatever was in flight is lost, the core starts again from flash.
                pending = None;
                dev = boot(&cfg, &mut flash, &mut now);
            }
            _ => {
                let frame = common_frame(&mut input);
                let _ = dev.handle_request(now, RxTransport::Ble, &frame);
            }
        }
        dev.poll(now, &mut flash);
        // The link takes each answer as it comes (a host that does not read them would only
        // stall the core, which a real link cannot do).
        while dev.poll_response().is_some() {}
        if pending.is_none() {
            pending = dev.poll_flash().map(Pending::of);
        }
        while let Some(event) = dev.poll_event() {
            if signed {
                assert!(
                    !matches!(
                        event,
                        BootloaderEvent::Activated { .. }
                            | BootloaderEvent::SoftDeviceActivated { .. }
                            | BootloaderEvent::BootloaderActivated { .. }
                            | BootloaderEvent::StartApp
                            | BootloaderEvent::Reset(ResetReason::UpdateComplete)
                    ),
                    "an unsigned update got as far as {event:?}"
                );
            }
            if let BootloaderEvent::Reset(_) = event {
                pending = None;
                dev = boot(&cfg, &mut flash, &mut now);
            }
        }
    }
    completed
}

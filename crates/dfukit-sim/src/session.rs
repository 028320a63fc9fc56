//! Whole updates against a simulated board in virtual time: what `dfukit
//! nordic dfu ble --sim`, the BLE benchmark and tests run.

use crate::board::run_until;
use crate::boards::nrf52840::{Bank1, BoardConfig, BoardError, Nrf52840};
use crate::links::ble::{BleParams, InvalidParams};
use crate::links::ble_link::{BleBoardLink, BleCounters};
use crate::storage::Storage;
use dfukit_core::Board;
use dfukit_nordic::bootloader::Mode;
use dfukit_nordic::host::{self, UpdateError, UpdateOptions};
use std::time::Duration;

/// What one update over the modelled BLE link did.
pub struct BleUpdate {
    /// The host's result.
    pub result: Result<(), UpdateError>,
    /// Virtual time from the first request to the host's return.
    pub transfer: Duration,
    /// Virtual time from the host's return to the new app running
    /// (activation: bank 1 copied to bank 0), if it got there.
    pub activation: Option<Duration>,
    /// Link counters (packets, drops, notifications).
    pub counters: BleCounters,
}

/// A blank nRF52840 with bank 1 on the MX25R6435F, flash timing on,
/// trusting `public_key` (hex, as `BoardConfig` holds it), booted to DFU.
pub fn qspi_board(public_key: Option<String>) -> Result<Nrf52840, BoardError> {
    let cfg = BoardConfig {
        bank1: Bank1::Qspi,
        flash_timing: true,
        public_key,
        ..BoardConfig::default()
    };
    let mut b = Nrf52840::new(
        cfg,
        Storage::in_memory(1 << 20),
        Storage::in_memory(8 << 20),
    )?;
    run_until(&mut b, Duration::from_secs(30), |b| {
        b.bootloader().mode() == Mode::Dfu && !b.bootloader().is_busy()
    });
    Ok(b)
}

/// Lets the board reset and activate the received image (bank 1 copied to
/// bank 0) until the bootloader is done with it; the virtual time it took,
/// or `None` when no valid app resulted within 120 s. `boots_before` is the
/// board's boot count before the update: the update's final reset may
/// already have happened when the host returns.
pub fn activate(b: &mut Nrf52840, boots_before: u32) -> Option<Duration> {
    let t = run_until(b, Duration::from_secs(120), |b| {
        b.boots() > boots_before
            && matches!(b.bootloader().mode(), Mode::AppStarted | Mode::Dfu)
            && !b.bootloader().is_busy()
    })?;
    b.inspect().app_valid.then_some(t)
}

/// Sends `fw` with its init packet over the modelled link, then lets the
/// board activate it.
pub fn update_over_ble(
    b: &mut Nrf52840,
    params: BleParams,
    seed: u64,
    opts: &UpdateOptions,
    init: &[u8],
    fw: &[u8],
    events: &mut dyn FnMut(host::UpdateEvent),
) -> Result<BleUpdate, InvalidParams> {
    let start = b.now();
    let boots = b.boots();
    let mut link = BleBoardLink::new(b, params, seed)?;
    let result = host::update(&mut link, opts, init, fw, events);
    let (_, counters) = link.finish();
    let transfer = b.now().saturating_duration_since(start);
    let activation = if result.is_ok() {
        activate(b, boots)
    } else {
        None
    };
    Ok(BleUpdate {
        result,
        transfer,
        activation,
        counters,
    })
}

//! Secure DFU over the modelled BLE link to a simulated nRF52840, in
//! virtual time: `dfukit nordic dfu ble --sim` and `dfukit bench ble`.

use super::diag::Diag;
use dfukit_nordic::bootloader::Mode;
use dfukit_nordic::host::{self, HostError, Options};
use dfukit_nordic::package::Package;
use dfukit_sim::ble::BleParams;
use dfukit_sim::ble_link::{BleBoardLink, BleCounters};
use dfukit_sim::nrf52840::{Bank1, BoardConfig, Nrf52840};
use dfukit_sim::Storage;
use std::path::Path;
use std::time::Duration;

/// What one update over the modelled link did.
pub struct SimRun {
    /// The host's result.
    pub result: Result<(), HostError>,
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
pub fn board(public_key: Option<String>) -> Result<Nrf52840, Diag> {
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
    )
    .map_err(|e| {
        Diag::new(
            "dfukit::sim::board",
            format!("cannot build the simulated board: {e}"),
            "this is a dfukit bug: please report it",
        )
    })?;
    run_until(&mut b, Duration::from_secs(30), |b| {
        b.target().mode() == Mode::Dfu && !b.target().is_busy()
    });
    Ok(b)
}

/// Advances the board through its own events until `done` or `limit` of
/// virtual time; returns the time it took if `done` held.
fn run_until(
    b: &mut Nrf52840,
    limit: Duration,
    done: impl Fn(&Nrf52840) -> bool,
) -> Option<Duration> {
    let start = b.now();
    let until = start + limit;
    while !done(b) {
        match b.next_wakeup() {
            Some(t) if t <= until => b.advance(t),
            _ => return None,
        }
    }
    Some(b.now().saturating_duration_since(start))
}

/// Lets the board reset and activate the received image (bank 1 copied to
/// bank 0) until the bootloader is done with it; the virtual time it took,
/// or `None` when no valid app resulted within 120 s. `boots_before` is the
/// board's boot count before the update: the update's final reset may
/// already have happened when the host returns.
pub fn activate(b: &mut Nrf52840, boots_before: u32) -> Option<Duration> {
    let t = run_until(b, Duration::from_secs(120), |b| {
        b.boots() > boots_before
            && matches!(b.target().mode(), Mode::AppStarted | Mode::Dfu)
            && !b.target().is_busy()
    })?;
    b.inspect().app_valid.then_some(t)
}

/// Sends `fw` with its init packet over the modelled link, then lets the
/// board activate it.
pub fn update(
    b: &mut Nrf52840,
    params: BleParams,
    seed: u64,
    opts: &Options,
    init: &[u8],
    fw: &[u8],
    events: &mut dyn FnMut(host::Event),
) -> Result<SimRun, Diag> {
    let start = b.now();
    let boots = b.boots();
    let mut link = BleBoardLink::new(b, params, seed).map_err(|e| {
        Diag::new(
            "dfukit::sim::ble",
            format!("invalid BLE link parameters: {e}"),
            "use the presets (15 ms, 7.5 ms) or valid values",
        )
    })?;
    let result = host::update(&mut link, opts, init, fw, events);
    let (_, counters) = link.finish();
    let transfer = b.now().saturating_duration_since(start);
    let activation = if result.is_ok() {
        activate(b, boots)
    } else {
        None
    };
    Ok(SimRun {
        result,
        transfer,
        activation,
        counters,
    })
}

/// `dfukit nordic dfu ble --sim`: every image of `pkg` to a simulated
/// board over the 15 ms link setting.
pub fn run(
    pkg: &Package,
    path: &Path,
    opts: &Options,
    public_key: Option<String>,
) -> Result<(), Diag> {
    let mut b = board(public_key)?;
    let params = BleParams::fast_15ms();
    for img in &pkg.images {
        let fw = super::dfu::firmware_of(img, path)?;
        let bar = super::progress::bar(fw.len() as u64, img.kind.display_name());
        let r = update(
            &mut b,
            params.clone(),
            1,
            opts,
            &img.init_packet,
            fw,
            &mut |e| {
                if let host::Event::Progress { done, .. } = e {
                    bar.set_position(done as u64);
                }
            },
        )?;
        bar.finish_and_clear();
        r.result.map_err(Diag::from)?;
        let bound = params.bound(fw.len(), usize::from(params.att_mtu - 3) / 4 * 4);
        println!(
            "{}: {} bytes in {:.3} s of virtual time over BLE (2M PHY, 15 ms interval; the link's bound is {:.3} s), activated in {}",
            img.kind.display_name(),
            fw.len(),
            r.transfer.as_secs_f64(),
            bound.seconds,
            r.activation
                .map_or("- (did not activate)".to_string(), |d| format!("{:.3} s", d.as_secs_f64()))
        );
        println!(
            "  link: {} packets, {} dropped by the device, {} notifications",
            r.counters.packets_sent, r.counters.writes_dropped, r.counters.notifications
        );
    }
    Ok(())
}

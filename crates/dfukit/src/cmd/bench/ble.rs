//! `dfukit bench ble`: the race. A 475,384-byte application goes
//! into bank 1 on the simulated nRF52840's MX25R6435F and is then activated,
//! over the modelled BLE link (2M PHY, ATT MTU 247, data length 251, 15 ms
//! and 7.5 ms intervals; and the user report's phone, which sends one
//! packet per connection event) and over a UART at 115200 and 1000000 baud, all in
//! virtual time. Each transfer is compared with the link's bound and with a
//! host that behaves like the phone library of the user report.

use crate::util::diag::Diag;
use clap::Args;
use dfukit_core::FlashOp;
use dfukit_nordic::host::{self, UpdateOptions};
use dfukit_nordic::package;
use dfukit_sim::flash::FlashTiming;
use dfukit_sim::links::ble::BleParams;
use dfukit_sim::links::serial::BoardLink;
use dfukit_sim::links::uart::UartModel;
use dfukit_sim::session;
use dfukit_sim::Board;
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// The image of the user report: 117 objects of 4 KiB.
const REPORT_IMAGE: usize = 475_384;

/// Options of `bench ble`.
#[derive(Args)]
pub struct BleBench {
    /// Image size in bytes.
    #[arg(long, default_value_t = REPORT_IMAGE)]
    size: usize,
    /// Seed of the link model (anchor offsets, packet errors).
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

/// One link setting's figures.
#[derive(Serialize)]
struct Entry {
    link: String,
    image_bytes: usize,
    /// dfukit's host: first request to the last object executed.
    transfer_s: f64,
    throughput_kb_s: f64,
    /// The link's bound in its model.
    bound_s: f64,
    bound_formula: String,
    /// bound_s / transfer_s.
    ratio: f64,
    /// The phone-library profile of the user report on the same link.
    baseline_transfer_s: f64,
    /// baseline_transfer_s / transfer_s.
    speedup_vs_baseline: f64,
    /// Bank 1 copied into bank 0 and the app started.
    activation_s: f64,
    /// The internal flash's erase and program time for the copy.
    activation_bound_s: f64,
    packets_dropped: u64,
}

fn diag(e: impl std::fmt::Display) -> Diag {
    Diag::new(
        "dfukit::bench::ble",
        format!("benchmark run failed: {e}"),
        "this is a bug in dfukit's simulator or host; please report it with the output",
    )
}

/// The nRF52840 NVMC time to erase and program `len` bytes of bank 0, page
/// by page: the floor of activation.
fn activation_bound(len: usize) -> Duration {
    let t = FlashTiming::nrf52840_internal();
    let page = [0u8; 4096];
    let per_page = t.duration(&FlashOp::Erase { addr: 0, len: 4096 })
        + t.duration(&FlashOp::Program {
            addr: 0,
            data: &page,
        });
    per_page * len.div_ceil(4096) as u32
}

/// Runs `bench ble`.
pub fn run(a: &BleBench) -> Result<(), Diag> {
    let dir = tempfile::tempdir().map_err(diag)?;
    let zip = super::fixtures::app_package(dir.path(), a.size, 0x0B1E)?;
    let pkg = package::Package::open(&zip).map_err(diag)?;
    let img = &pkg.images[0];
    let fw = img.firmware.as_ref().ok_or_else(|| diag("no firmware"))?;
    let init = &img.init_packet;
    let ours = UpdateOptions::default();
    let phone = UpdateOptions::phone_baseline();
    let activation_bound_s = activation_bound(fw.len()).as_secs_f64();

    let mut out = BTreeMap::new();
    for (name, params) in [
        ("ble-2m-ci15ms", BleParams::fast_15ms()),
        ("ble-2m-ci7.5ms", BleParams::fast_7_5ms()),
        ("ble-phone-report", BleParams::phone_report()),
    ] {
        let run = |o: &UpdateOptions| -> Result<session::BleUpdate, Diag> {
            let mut b = session::qspi_board(None).map_err(diag)?;
            let r =
                session::update_over_ble(&mut b, params.clone(), a.seed, o, init, fw, &mut |_| {})
                    .map_err(diag)?;
            if let Err(e) = &r.result {
                return Err(diag(format!("{name}: {e}")));
            }
            Ok(r)
        };
        let r = run(&ours)?;
        let base = run(&phone)?;
        let bound = params.bound(fw.len(), usize::from(params.att_mtu - 3) / 4 * 4);
        let transfer = r.transfer.as_secs_f64();
        let baseline = base.transfer.as_secs_f64();
        out.insert(
            name.to_string(),
            Entry {
                link: format!(
                    "BLE {:?} PHY, interval {:?}, event {:?}, ATT MTU {}, data length {}",
                    params.phy,
                    params.conn_interval,
                    params.event_length,
                    params.att_mtu,
                    params.data_length
                ),
                image_bytes: fw.len(),
                transfer_s: transfer,
                throughput_kb_s: fw.len() as f64 / transfer / 1000.0,
                bound_s: bound.seconds,
                bound_formula: bound.formula,
                ratio: bound.seconds / transfer,
                baseline_transfer_s: baseline,
                speedup_vs_baseline: baseline / transfer,
                activation_s: r
                    .activation
                    .ok_or_else(|| diag("the app did not start"))?
                    .as_secs_f64(),
                activation_bound_s,
                packets_dropped: r.counters.writes_dropped,
            },
        );
    }
    for baud in [115_200u32, 1_000_000] {
        let uart = UartModel::new(baud);
        let run = |o: &UpdateOptions| -> Result<(Duration, Duration), Diag> {
            let mut b = session::qspi_board(None).map_err(diag)?;
            let start = b.now();
            let boots = b.boots();
            let r = {
                let mut link = BoardLink::with_uart(&mut b, uart);
                host::update(&mut link, o, init, fw, &mut |_| {})
            };
            r.map_err(|e| diag(format!("uart {baud}: {e}")))?;
            let transfer = b.now().saturating_duration_since(start);
            let act =
                session::activate(&mut b, boots).ok_or_else(|| diag("the app did not start"))?;
            Ok((transfer, act))
        };
        let (transfer, act) = run(&ours)?;
        let (baseline, _) = run(&phone)?;
        // The floor: the image's bytes on the line at 10 bits per byte.
        let bound = uart.bytes_time(fw.len());
        let t = transfer.as_secs_f64();
        out.insert(
            format!("uart-{baud}"),
            Entry {
                link: format!("UART {baud} baud 8N1, SLIP"),
                image_bytes: fw.len(),
                transfer_s: t,
                throughput_kb_s: fw.len() as f64 / t / 1000.0,
                bound_s: bound.as_secs_f64(),
                bound_formula: format!("N × 10 bits / baud = {} × 10 / {baud}", fw.len()),
                ratio: bound.as_secs_f64() / t,
                baseline_transfer_s: baseline.as_secs_f64(),
                speedup_vs_baseline: baseline.as_secs_f64() / t,
                activation_s: act.as_secs_f64(),
                activation_bound_s,
                packets_dropped: 0,
            },
        );
    }
    if crate::util::progress::json() {
        println!("{}", serde_json::to_string(&out).expect("serializes"));
        return Ok(());
    }
    println!(
        "Secure DFU of a {}-byte app into bank 1 on QSPI (MX25R6435F timing), then activation; virtual time, seed {}",
        fw.len(),
        a.seed
    );
    println!(
        "{:<16} {:>10} {:>9} {:>9} {:>7} {:>11} {:>8} {:>11} {:>8}",
        "link",
        "transfer s",
        "kB/s",
        "bound s",
        "ratio",
        "baseline s",
        "speedup",
        "activation",
        "act bnd"
    );
    for (name, e) in &out {
        println!(
            "{:<16} {:>10.3} {:>9.1} {:>9.3} {:>6.1}% {:>11.3} {:>7.1}x {:>10.3}s {:>7.3}s",
            name,
            e.transfer_s,
            e.throughput_kb_s,
            e.bound_s,
            e.ratio * 100.0,
            e.baseline_transfer_s,
            e.speedup_vs_baseline,
            e.activation_s,
            e.activation_bound_s
        );
    }
    for (name, e) in &out {
        println!("{name}: {}", e.bound_formula);
    }
    Ok(())
}

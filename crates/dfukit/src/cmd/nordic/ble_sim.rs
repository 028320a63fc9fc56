//! `dfukit nordic dfu ble --sim`: Secure DFU over the modelled BLE link to
//! a simulated nRF52840, in virtual time.

use crate::util::diag::Diag;
use crate::util::nordic::firmware_of;
use crate::util::progress;
use dfukit_nordic::host::{self, UpdateOptions};
use dfukit_nordic::package::Package;
use dfukit_sim::links::ble::BleParams;
use dfukit_sim::session;
use std::path::Path;

/// A simulated board that could not be built: a dfukit bug.
pub fn board_diag(e: impl std::fmt::Display) -> Diag {
    Diag::new(
        "dfukit::sim::board",
        format!("cannot build the simulated board: {e}"),
        "this is a dfukit bug: please report it",
    )
}

/// Invalid BLE link parameters.
pub fn params_diag(e: impl std::fmt::Display) -> Diag {
    Diag::new(
        "dfukit::sim::ble",
        format!("invalid BLE link parameters: {e}"),
        "use the presets (15 ms, 7.5 ms) or valid values",
    )
}

/// Every image of `pkg` to a simulated board over the 15 ms link setting.
pub fn run(
    pkg: &Package,
    path: &Path,
    opts: &UpdateOptions,
    public_key: Option<String>,
) -> Result<(), Diag> {
    let mut b = session::qspi_board(public_key).map_err(board_diag)?;
    let params = BleParams::fast_15ms();
    for img in &pkg.images {
        let fw = firmware_of(img, path)?;
        let bar = progress::bar(fw.len() as u64, img.kind.display_name());
        let r = session::update_over_ble(
            &mut b,
            params.clone(),
            1,
            opts,
            &img.init_packet,
            fw,
            &mut |e| {
                if let host::UpdateEvent::Progress { done, .. } = e {
                    bar.set_position(done as u64);
                }
            },
        )
        .map_err(params_diag)?;
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

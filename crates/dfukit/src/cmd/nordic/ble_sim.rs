//! `dfukit nordic dfu ble --sim`: Secure DFU over the modelled BLE link to
//! a simulated nRF52840, in virtual time.

use crate::util::diag::Diag;
use crate::util::nordic::{
    did_not_come_back, firmware_of, image_label, reconnected, report, resets_device,
};
use crate::util::progress::{self, Task};
use dfukit_core::Board as _;
use dfukit_nordic::bootloader::Mode;
use dfukit_nordic::host::UpdateOptions;
use dfukit_nordic::package::Package;
use dfukit_sim::links::ble::BleParams;
use dfukit_sim::session;
use serde_json::json;
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
    let count = pkg.images.len();
    for (i, img) in pkg.images.iter().enumerate() {
        let fw = firmware_of(img, path)?;
        let label = image_label(img.kind, i, count);
        let mut task = Task::start(&label, fw.len() as u64);
        let t0 = b.now();
        let r = session::update_over_ble(
            &mut b,
            params.clone(),
            1,
            opts,
            &img.init_packet,
            fw,
            &mut |e| report(&mut task, e),
        )
        .map_err(params_diag)?;
        if let Err(e) = r.result {
            task.fail();
            return Err(e.into());
        }
        task.finish(
            &format!("{} bytes sent and accepted", fw.len()),
            json!({"bytes": fw.len(), "image": i + 1, "count": count}),
        );
        // The activation of a SoftDevice or bootloader resets the board:
        // the next image goes over a new connection to the bootloader, as
        // nrfutil and Android DFU reconnect.
        if resets_device(img.kind) && i + 1 < count {
            if b.bootloader().mode() != Mode::Dfu {
                let e = dfukit_nordic::host::UpdateError::NotADfuTarget {
                    waited: b.now().saturating_duration_since(t0) - r.transfer,
                };
                return Err(did_not_come_back(img.kind, &e));
            }
            reconnected(b.now().saturating_duration_since(t0) - r.transfer);
        }
        let bound = params.bound(fw.len(), usize::from(params.att_mtu - 3) / 4 * 4);
        let activation = r.activation.map(|d| d.as_secs_f64());
        progress::result(
            "image",
            &format!(
                "{}: {} bytes in {:.3} s of virtual time over BLE (2M PHY, 15 ms interval; the link's bound is {:.3} s), activated in {}",
                label,
                fw.len(),
                r.transfer.as_secs_f64(),
                bound.seconds,
                activation.map_or(if resets_device(img.kind) { "- (no application yet)" } else { "- (did not activate)" }.to_string(), |s| format!("{s:.3} s"))
            ),
            json!({
                "image": label,
                "bytes": fw.len(),
                "transfer_seconds": r.transfer.as_secs_f64(),
                "bound_seconds": bound.seconds,
                "activation_seconds": activation,
            }),
        );
        let c = &r.counters;
        progress::result(
            "link",
            &format!(
                "  link: {} packets, {} dropped by the device, {} notifications",
                c.packets_sent, c.writes_dropped, c.notifications
            ),
            json!({"packets": c.packets_sent, "dropped": c.writes_dropped, "notifications": c.notifications}),
        );
    }
    Ok(())
}

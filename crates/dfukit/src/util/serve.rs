//! Exporting a simulated board over USB/IP, for `sim`, `demo` and `bench`.

use super::diag::Diag;

/// Serves `board` over USB/IP on `addr` (port 0: any free port) under busid
/// 1-1, on background threads.
pub fn serve_usbip<D: dfukit_usbip::UsbDevice + 'static>(
    addr: &str,
    board: std::sync::Arc<std::sync::Mutex<D>>,
) -> Result<dfukit_usbip::Server, Diag> {
    let usbip_error = |e: &dyn std::fmt::Display| {
        Diag::new(
            "dfukit::sim::usbip",
            format!("cannot export the board on {addr}: {e}"),
            "pick a free port (or port 0), or stop the program that holds it (another usbipd?)",
        )
    };
    let server = dfukit_usbip::Server::bind(addr).map_err(|e| usbip_error(&e))?;
    server
        .add_shared("1-1", board)
        .map_err(|e| usbip_error(&e))?;
    server.spawn().map_err(|e| usbip_error(&e))?;
    Ok(server)
}

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
    if let Some(warning) = exposure_warning(server.local_addr()) {
        eprintln!("{warning}");
    }
    server
        .add_shared("1-1", board)
        .map_err(|e| usbip_error(&e))?;
    server.spawn().map_err(|e| usbip_error(&e))?;
    Ok(server)
}

/// The warning for a USB/IP export reachable from other machines: USB/IP has no
/// authentication, so anyone who can reach the port can import the board and program it.
fn exposure_warning(bound: std::net::SocketAddr) -> Option<String> {
    (!bound.ip().is_loopback()).then(|| {
        format!(
            "warning: the board's USB/IP server listens on {bound}, which is not loopback: \
             anyone on the network can import and program it (bind 127.0.0.1 to keep it local)"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::exposure_warning;

    #[test]
    fn a_non_loopback_bind_warns_that_anyone_can_program_the_board() {
        let warning = exposure_warning("0.0.0.0:3240".parse().unwrap()).unwrap();
        assert!(warning.contains("0.0.0.0:3240"), "{warning}");
        assert!(warning.contains("anyone on the network can import and program it"));
        assert_eq!(exposure_warning("127.0.0.1:3240".parse().unwrap()), None);
        assert_eq!(exposure_warning("[::1]:3240".parse().unwrap()), None);
    }
}

//! Misbehaving network servers for the tests of dfukit's clients.

use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

/// A USB/IP server on 127.0.0.1 that answers every connection with a valid OP_REP_DEVLIST
/// header announcing one device, then zeros, one byte every 300 ms, until the client hangs
/// up: each byte comes well within any per-read timeout, so only a deadline on the whole
/// exchange ends the wait.
pub fn usbip_trickler() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut c) = conn else { return };
            std::thread::spawn(move || {
                let header = [0x01, 0x11, 0x00, 0x05, 0, 0, 0, 0, 0, 0, 0, 1];
                for b in header.into_iter().chain(std::iter::repeat(0)) {
                    if c.write_all(&[b]).is_err() {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(300));
                }
            });
        }
    });
    addr
}

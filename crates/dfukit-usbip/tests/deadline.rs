//! One deadline per exchange: a server that trickles its reply one byte at a time, each just
//! under any per-read timeout, cannot hold `Client::list_with_timeout` past its limit.

use dfukit_usbip::Client;
use std::io::Write;
use std::net::TcpListener;
use std::time::{Duration, Instant};

/// A server that accepts connections and sends a valid OP_REP_DEVLIST header announcing one
/// device, then zeros, one byte every 300 ms, forever (until the client hangs up).
fn trickler() -> std::net::SocketAddr {
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

#[test]
fn a_trickling_server_cannot_extend_the_list_deadline() {
    let addr = trickler();
    let limit = Duration::from_millis(1500);
    let t0 = Instant::now();
    let e = Client::list_with_timeout(addr, limit).unwrap_err();
    let took = t0.elapsed();
    assert_eq!(e.kind(), std::io::ErrorKind::TimedOut, "{e}");
    assert!(e.to_string().contains("OP_REP_DEVLIST"), "{e}");
    assert!(took < limit * 2, "took {took:?} for a {limit:?} limit");
}

#[test]
fn a_trickling_server_cannot_extend_the_import_deadline() {
    let addr = trickler();
    let limit = Duration::from_millis(1500);
    let t0 = Instant::now();
    let e = Client::import_with_timeout(addr, "1-1", limit).unwrap_err();
    assert!(t0.elapsed() < limit * 2, "took {:?}", t0.elapsed());
    assert!(
        matches!(&e, dfukit_usbip::ImportError::Io(io) if io.kind() == std::io::ErrorKind::TimedOut),
        "{e}"
    );
}

//! One deadline per exchange: a server that trickles its reply one byte at a time, each just
//! under any per-read timeout, cannot hold `Client::list_with_timeout` past its limit.

use dfukit_usbip::Client;
use std::time::{Duration, Instant};

#[test]
fn a_trickling_server_cannot_extend_the_list_deadline() {
    let addr = dfukit_testkit::servers::usbip_trickler();
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
    let addr = dfukit_testkit::servers::usbip_trickler();
    let limit = Duration::from_millis(1500);
    let t0 = Instant::now();
    let e = Client::import_with_timeout(addr, "1-1", limit).unwrap_err();
    assert!(t0.elapsed() < limit * 2, "took {:?}", t0.elapsed());
    assert!(
        matches!(&e, dfukit_usbip::ImportError::Io(io) if io.kind() == std::io::ErrorKind::TimedOut),
        "{e}"
    );
}

//! The serial transport: SLIP frames over a UART, USB CDC port or pseudo-terminal.

use super::SecureDfuLink;
use crate::proto::SecureDfuRequest;
use crate::slip;
use dfukit_core::WallTime;
use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

/// A byte stream whose reads can time out (a serial port or pty).
pub trait Port: Read + Write {
    /// Sets how long one read may block before returning `TimedOut` or 0 bytes.
    fn set_read_timeout(&mut self, t: Duration) -> io::Result<()>;
}

/// Secure DFU requests and responses as SLIP frames on a [`Port`].
pub struct SlipLink<P: Port> {
    port: P,
    decoder: slip::Decoder<{ 2 * 1024 + 8 }>,
    rx: Box<[u8; 4096]>,
    rx_pos: usize,
    rx_len: usize,
    tx: Vec<u8>,
}

impl<P: Port> SlipLink<P> {
    /// Wraps an open port.
    pub fn new(port: P) -> Self {
        SlipLink {
            port,
            decoder: slip::Decoder::new(),
            rx: Box::new([0; 4096]),
            rx_pos: 0,
            rx_len: 0,
            tx: Vec::with_capacity(4096),
        }
    }

    /// The port.
    pub fn into_inner(self) -> P {
        self.port
    }
}

/// A serial port runs in real time.
impl<P: Port> WallTime for SlipLink<P> {}

impl<P: Port> SecureDfuLink for SlipLink<P> {
    fn send(&mut self, req: &SecureDfuRequest<'_>) -> io::Result<()> {
        self.tx.clear();
        let mut payload = Vec::with_capacity(8);
        req.encode(&mut |b| payload.extend_from_slice(b));
        slip::encode(&payload, &mut |b| self.tx.extend_from_slice(b));
        self.port.write_all(&self.tx)?;
        self.port.flush()
    }

    fn recv(&mut self, timeout: Duration) -> io::Result<Option<Vec<u8>>> {
        let deadline = Instant::now() + timeout;
        loop {
            while self.rx_pos < self.rx_len {
                let b = self.rx[self.rx_pos];
                self.rx_pos += 1;
                if let slip::Decoded::Frame(n) = self.decoder.push(b) {
                    return Ok(Some(self.decoder.frame(n).to_vec()));
                }
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            self.port.set_read_timeout(deadline - now)?;
            match self.port.read(&mut self.rx[..]) {
                Ok(0) => {
                    // A pty whose other side has not opened yet reads as EOF;
                    // wait a little rather than spin.
                    std::thread::sleep(Duration::from_millis(1).min(deadline - now));
                }
                Ok(n) => {
                    self.rx_pos = 0;
                    self.rx_len = n;
                }
                Err(e)
                    if e.kind() == io::ErrorKind::TimedOut
                        || e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    fn max_write(&self, device_mtu: u16) -> usize {
        slip::max_payload(device_mtu)
    }
}

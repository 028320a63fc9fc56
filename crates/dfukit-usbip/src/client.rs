//! USB/IP client: list a server's devices, import one, and run control transfers on it.
//!
//! ```no_run
//! use std::time::Duration;
//! use dfukit_usbip::{Client, SetupPacket};
//!
//! let devices = Client::list("127.0.0.1:3240")?;
//! let busid = &devices[0].device.busid;
//! let mut dev = Client::import("127.0.0.1:3240", busid)?;
//! // GET_DESCRIPTOR(device)
//! let setup = SetupPacket { request_type: 0x80, request: 6, value: 0x0100, index: 0, length: 18 };
//! let descriptor = dev.control(setup, &[], Duration::from_secs(1))?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use thiserror::Error;

use crate::device::SetupPacket;
use crate::stream::read_again;
use crate::wire::{
    CmdSubmit, CmdUnlink, DeviceRecord, Direction, ExportedDevice, HeaderBasic, OpHeader,
    OpRepDevlist, OpRepImport, OpReqDevlist, OpReqImport, RetSubmit, RetUnlink, UsbipWireError,
    DEVICE_RECORD_LEN, INTERFACE_RECORD_LEN, MAX_DEVLIST_DEVICES, NOT_ISO, OP_HEADER_LEN,
    OP_REP_DEVLIST, OP_REP_IMPORT, STATUS_NO_DEVICE, STATUS_SHUTDOWN, STATUS_STALL,
    STATUS_UNLINKED, ST_OK, URB_HEADER_LEN, USBIP_RET_SUBMIT, USBIP_RET_UNLINK,
};

/// Linux `URB_DIR_IN` transfer flag, set on IN submissions as Linux' vhci does.
const URB_DIR_IN: u32 = 0x0200;

/// Why a control transfer failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ControlError {
    /// The device stalled the request (URB status `-EPIPE`); libusb's `LIBUSB_ERROR_PIPE`.
    /// The connection stays usable.
    #[error("control transfer stalled")]
    Stall,
    /// No reply within the timeout. The request was unlinked (`CMD_UNLINK`) and a late reply
    /// will be discarded; the connection stays usable. libusb's `LIBUSB_ERROR_TIMEOUT`.
    #[error("control transfer timed out")]
    Timeout,
    /// The device is gone: the server closed the connection (EOF, reset) or answered with
    /// `-ENODEV`/`-ESHUTDOWN`. Every later call fails the same way; libusb's
    /// `LIBUSB_ERROR_NO_DEVICE`.
    #[error("device disconnected")]
    Disconnected,
    /// The URB completed with another non-zero Linux errno (negative, e.g. `-ECONNRESET` if it
    /// was unlinked). libusb's `LIBUSB_ERROR_IO`.
    #[error("control transfer failed with URB status {status}")]
    Status {
        /// The (negative) status from `RET_SUBMIT`.
        status: i32,
    },
    /// A local I/O error, invalid arguments (`InvalidInput`) or a malformed reply
    /// (`InvalidData`, wrapping a [`UsbipWireError`]; the connection is then closed).
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
}

/// Why an import failed.
#[derive(Debug, Error)]
pub enum ImportError {
    /// Connecting, sending or receiving failed, or the server closed the connection.
    #[error("I/O error importing from the USB/IP server: {0}")]
    Io(#[from] io::Error),
    /// The server's reply is malformed.
    #[error("malformed import reply: {0}")]
    Wire(#[from] UsbipWireError),
    /// The server refused: unknown busid ([`ST_NODEV`](crate::wire::ST_NODEV)), device
    /// already imported ([`ST_DEV_BUSY`](crate::wire::ST_DEV_BUSY)) or another `ST_*` status.
    #[error("server refused to import `{busid}` (status {status})")]
    Refused {
        /// The busid asked for.
        busid: String,
        /// The `ST_*` status of `OP_REP_IMPORT`.
        status: u32,
    },
}

/// Outcome of [`Imported::unlink`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unlinked {
    /// The request was cancelled (`RET_UNLINK` status `-ECONNRESET`); no reply will come for it.
    Cancelled,
    /// The request had already completed (`RET_UNLINK` status 0); its reply, if not yet
    /// collected, was discarded.
    AlreadyCompleted,
}

/// USB/IP client entry points.
#[derive(Debug, Clone, Copy, Default)]
pub struct Client;

impl Client {
    /// Connect and I/O timeout used by [`Client::list`] and [`Client::import`].
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

    /// List the devices a server exports (`OP_REQ_DEVLIST`), with their interface records.
    ///
    /// One TCP connection per call, closed afterwards. The whole exchange (connect, request,
    /// reply) must finish within [`Client::DEFAULT_TIMEOUT`]; a server that does not is a
    /// `TimedOut` error. A malformed reply is an `InvalidData` error wrapping a
    /// [`UsbipWireError`].
    pub fn list<A: ToSocketAddrs>(addr: A) -> io::Result<Vec<ExportedDevice>> {
        Self::list_with_timeout(addr, Self::DEFAULT_TIMEOUT)
    }

    /// [`Client::list`] with an explicit limit for the whole exchange.
    pub fn list_with_timeout<A: ToSocketAddrs>(
        addr: A,
        timeout: Duration,
    ) -> io::Result<Vec<ExportedDevice>> {
        Self::list_until(addr, Instant::now() + timeout)
    }

    /// [`Client::list`] that must finish by `deadline`: connect and every read get only the
    /// time left, so a server that trickles its reply cannot extend the exchange. Past the
    /// deadline the error is `TimedOut`.
    pub fn list_until<A: ToSocketAddrs>(
        addr: A,
        deadline: Instant,
    ) -> io::Result<Vec<ExportedDevice>> {
        let mut s = connect(addr, deadline)?;
        s.write_all(&OpReqDevlist.encode())?;
        let mut buf = vec![0u8; OP_HEADER_LEN + 4];
        read_exact_until(&mut s, &mut buf, deadline, "OP_REP_DEVLIST")?;
        let h = OpHeader::decode(&buf[..OP_HEADER_LEN])?;
        if h.code != OP_REP_DEVLIST {
            return Err(UsbipWireError::UnexpectedValue {
                message: "OP_REP_DEVLIST",
                field: "code",
                offset: 2,
                expected: OP_REP_DEVLIST.into(),
                found: h.code.into(),
            }
            .into());
        }
        if h.status != ST_OK {
            return Err(io::Error::other(format!(
                "server answered OP_REQ_DEVLIST with status {}",
                h.status
            )));
        }
        let n = u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]);
        if n > MAX_DEVLIST_DEVICES {
            return Err(UsbipWireError::OutOfRange {
                message: "OP_REP_DEVLIST",
                field: "ndev",
                offset: 8,
                found: n,
            }
            .into());
        }
        for _ in 0..n {
            let start = buf.len();
            buf.resize(start + DEVICE_RECORD_LEN, 0);
            read_exact_until(&mut s, &mut buf[start..], deadline, "OP_REP_DEVLIST")?;
            let num_interfaces = usize::from(buf[start + DEVICE_RECORD_LEN - 1]);
            let start = buf.len();
            buf.resize(start + num_interfaces * INTERFACE_RECORD_LEN, 0);
            read_exact_until(&mut s, &mut buf[start..], deadline, "OP_REP_DEVLIST")?;
        }
        let _ = s.shutdown(Shutdown::Both);
        Ok(OpRepDevlist::decode(&buf)?.devices)
    }

    /// Import the device `busid` (`OP_REQ_IMPORT`); on success the connection stays open and
    /// carries the device's URB traffic until the [`Imported`] is dropped.
    pub fn import<A: ToSocketAddrs>(addr: A, busid: &str) -> Result<Imported, ImportError> {
        Self::import_with_timeout(addr, busid, Self::DEFAULT_TIMEOUT)
    }

    /// [`Client::import`] with an explicit limit for the import exchange (connect, request,
    /// reply; each later control transfer has its own timeout).
    pub fn import_with_timeout<A: ToSocketAddrs>(
        addr: A,
        busid: &str,
        timeout: Duration,
    ) -> Result<Imported, ImportError> {
        Self::import_until(addr, busid, Instant::now() + timeout)
    }

    /// [`Client::import`] whose exchange must finish by `deadline` (see
    /// [`Client::list_until`]); past it the error is [`ImportError::Io`] with `TimedOut`.
    pub fn import_until<A: ToSocketAddrs>(
        addr: A,
        busid: &str,
        deadline: Instant,
    ) -> Result<Imported, ImportError> {
        let req = OpReqImport {
            busid: busid.to_owned(),
        }
        .encode()?;
        let mut s = connect(addr, deadline)?;
        s.write_all(&req)?;
        let mut buf = vec![0u8; OP_HEADER_LEN];
        read_exact_until(&mut s, &mut buf, deadline, "OP_REP_IMPORT")?;
        let h = OpHeader::decode(&buf)?;
        if h.code == OP_REP_IMPORT && h.status == ST_OK {
            buf.resize(OP_HEADER_LEN + DEVICE_RECORD_LEN, 0);
            read_exact_until(&mut s, &mut buf[OP_HEADER_LEN..], deadline, "OP_REP_IMPORT")?;
        }
        match OpRepImport::decode(&buf)? {
            OpRepImport::Refused { status } => Err(ImportError::Refused {
                busid: busid.to_owned(),
                status,
            }),
            OpRepImport::Ok(device) => {
                s.set_read_timeout(None)?;
                // The import's deadline bounded the exchange; URB writes get the usual limit.
                s.set_write_timeout(Some(Client::DEFAULT_TIMEOUT))?;
                Ok(Imported {
                    stream: s,
                    device,
                    next_seqnum: 1,
                    rx: Vec::new(),
                    outstanding: HashMap::new(),
                    last_requested: 0,
                    unlinks: HashMap::new(),
                    disconnected: false,
                })
            }
        }
    }
}

/// The time left until `deadline`, or a `TimedOut` error naming `what` if none is.
fn remaining(deadline: Instant, what: &str) -> io::Result<Duration> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("{what} did not complete before the deadline"),
        ));
    }
    Ok(left)
}

fn connect<A: ToSocketAddrs>(addr: A, deadline: Instant) -> io::Result<TcpStream> {
    let addrs: Vec<SocketAddr> = addr.to_socket_addrs()?.collect();
    let mut last = io::Error::new(io::ErrorKind::InvalidInput, "no address to connect to");
    for a in addrs {
        let left = remaining(deadline, "connect")?;
        match TcpStream::connect_timeout(&a, left) {
            Ok(s) => {
                s.set_nodelay(true)?;
                s.set_write_timeout(Some(left))?;
                return Ok(s);
            }
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// `read_exact` that gives up at `deadline`: each partial read waits only for the time left,
/// so bytes trickling in just under a per-read timeout cannot hold the caller past it.
fn read_exact_until(
    s: &mut TcpStream,
    mut buf: &mut [u8],
    deadline: Instant,
    what: &str,
) -> io::Result<()> {
    while !buf.is_empty() {
        s.set_read_timeout(Some(remaining(deadline, what)?))?;
        match s.read(buf) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("the server closed the connection before the end of {what}"),
                ))
            }
            Ok(n) => buf = &mut buf[n..],
            Err(e) if read_again(&e) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// A message received on an import connection.
enum Incoming {
    Submit(RetSubmit),
    Unlink { target: Option<u32>, ret: RetUnlink },
}

/// An imported device: one TCP connection carrying URBs for it.
///
/// `Send` (not `Sync`): share it across threads behind a `Mutex`. Requests are issued one at a
/// time by [`control`](Self::control); [`submit_control`](Self::submit_control),
/// [`wait`](Self::wait) and [`unlink`](Self::unlink) expose the asynchronous steps. Sequence
/// numbers start at 1 and increase by one per command (`CMD_SUBMIT` and `CMD_UNLINK` alike).
/// Dropping it closes the connection, which the server treats as a detach.
#[derive(Debug)]
pub struct Imported {
    stream: TcpStream,
    device: DeviceRecord,
    next_seqnum: u32,
    /// Bytes received but not yet parsed.
    rx: Vec<u8>,
    /// Submitted URBs whose `RET_SUBMIT` may still come, with their direction (needed to frame
    /// it) and transfer buffer length.
    outstanding: HashMap<u32, (Direction, u32)>,
    /// Requested length of the URB whose reply was last parsed.
    last_requested: u32,
    /// Unlink seqnum → seqnum of the URB it targets.
    unlinks: HashMap<u32, u32>,
    disconnected: bool,
}

impl Imported {
    /// Resets the device's port (SET_FEATURE(PORT_RESET), as the kernel's
    /// vhci driver sends it). A device that re-enumerates may end the import.
    pub fn port_reset(&mut self, timeout: Duration) -> Result<(), ControlError> {
        let setup = SetupPacket {
            request_type: crate::server::PORT_RESET_REQUEST_TYPE,
            request: crate::descriptors::SET_FEATURE,
            value: crate::server::PORT_RESET,
            index: 1,
            length: 0,
        };
        self.control(setup, &[], timeout).map(|_| ())
    }

    /// The device record from `OP_REP_IMPORT` (ids, class triple, configuration, interface
    /// count, speed, busid, busnum/devnum). Interface class triples are only in
    /// [`Client::list`]'s records.
    pub fn info(&self) -> &DeviceRecord {
        &self.device
    }

    /// `(busnum << 16) | devnum`, sent in every URB header.
    pub fn devid(&self) -> u32 {
        self.device.devid()
    }

    /// Whether the connection is still believed to be up (false after any
    /// [`ControlError::Disconnected`]).
    pub fn is_connected(&self) -> bool {
        !self.disconnected
    }

    /// Run one control transfer on endpoint 0 and wait for its result.
    ///
    /// * IN (`setup.request_type & 0x80 != 0`): returns the data, at most `setup.length` bytes
    ///   (a short reply is not an error); `data_out` must be empty.
    /// * OUT: sends `data_out`, whose length must equal `setup.length`; returns an empty vector.
    ///
    /// Errors: [`ControlError::Stall`] for `-EPIPE`; [`ControlError::Timeout`] if no reply came
    /// within `timeout` (the URB is then unlinked); [`ControlError::Disconnected`] on EOF or
    /// `-ENODEV`/`-ESHUTDOWN`; [`ControlError::Status`] for other URB errors;
    /// [`ControlError::Io`] with `InvalidInput` for a length mismatch.
    pub fn control(
        &mut self,
        setup: SetupPacket,
        data_out: &[u8],
        timeout: Duration,
    ) -> Result<Vec<u8>, ControlError> {
        let deadline = Instant::now() + timeout;
        let seqnum = self.submit_control(setup, data_out)?;
        match self.wait_until(seqnum, deadline) {
            Err(ControlError::Timeout) => {
                // Best effort: the answer to the unlink is consumed by later calls.
                let _ = self.send_unlink(seqnum);
                Err(ControlError::Timeout)
            }
            other => other,
        }
    }

    /// Send a control `CMD_SUBMIT` without waiting; returns its seqnum for
    /// [`wait`](Self::wait) or [`unlink`](Self::unlink). Same argument rules as
    /// [`control`](Self::control).
    pub fn submit_control(
        &mut self,
        setup: SetupPacket,
        data_out: &[u8],
    ) -> Result<u32, ControlError> {
        if self.disconnected {
            return Err(ControlError::Disconnected);
        }
        let direction = if setup.is_in() {
            Direction::In
        } else {
            Direction::Out
        };
        let expected_out = match direction {
            Direction::In => 0,
            Direction::Out => usize::from(setup.length),
        };
        if data_out.len() != expected_out {
            return Err(ControlError::Io(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "control transfer data stage is {} bytes but must be {} (wLength {}, {:?})",
                    data_out.len(),
                    expected_out,
                    setup.length,
                    direction
                ),
            )));
        }
        let seqnum = self.take_seqnum();
        let cmd = CmdSubmit {
            seqnum,
            devid: self.devid(),
            direction,
            ep: 0,
            transfer_flags: if direction == Direction::In {
                URB_DIR_IN
            } else {
                0
            },
            transfer_buffer_length: setup.length.into(),
            start_frame: 0,
            number_of_packets: NOT_ISO,
            interval: 0,
            setup: setup.to_bytes(),
            data: data_out.to_vec(),
        };
        self.send(&cmd.encode())?;
        self.outstanding
            .insert(seqnum, (direction, setup.length.into()));
        Ok(seqnum)
    }

    /// Wait up to `timeout` for the result of the URB `seqnum` sent by
    /// [`submit_control`](Self::submit_control). On timeout the URB stays submitted (call
    /// [`unlink`](Self::unlink) or wait again). Replies for other seqnums are discarded.
    pub fn wait(&mut self, seqnum: u32, timeout: Duration) -> Result<Vec<u8>, ControlError> {
        self.wait_until(seqnum, Instant::now() + timeout)
    }

    /// Cancel the URB `seqnum` (`CMD_UNLINK`) and wait up to `timeout` for `RET_UNLINK`.
    pub fn unlink(&mut self, seqnum: u32, timeout: Duration) -> Result<Unlinked, ControlError> {
        let deadline = Instant::now() + timeout;
        let unlink_seq = self.send_unlink(seqnum)?;
        loop {
            match self.next_message(deadline)? {
                Incoming::Unlink { ret, .. } if ret.seqnum == unlink_seq => {
                    return Ok(if ret.status == STATUS_UNLINKED {
                        Unlinked::Cancelled
                    } else {
                        Unlinked::AlreadyCompleted
                    });
                }
                _ => continue,
            }
        }
    }

    fn take_seqnum(&mut self) -> u32 {
        let s = self.next_seqnum;
        self.next_seqnum = self.next_seqnum.wrapping_add(1).max(1);
        s
    }

    fn send_unlink(&mut self, target: u32) -> Result<u32, ControlError> {
        if self.disconnected {
            return Err(ControlError::Disconnected);
        }
        let seqnum = self.take_seqnum();
        let direction = self
            .outstanding
            .get(&target)
            .map_or(Direction::Out, |&(d, _)| d);
        let cmd = CmdUnlink {
            seqnum,
            devid: self.devid(),
            direction,
            ep: 0,
            unlink_seqnum: target,
        };
        self.send(&cmd.encode())?;
        self.unlinks.insert(seqnum, target);
        Ok(seqnum)
    }

    fn send(&mut self, bytes: &[u8]) -> Result<(), ControlError> {
        match self.stream.write_all(bytes) {
            Ok(()) => Ok(()),
            Err(e) => Err(self.io_failure(e)),
        }
    }

    fn io_failure(&mut self, e: io::Error) -> ControlError {
        use io::ErrorKind::*;
        match e.kind() {
            BrokenPipe | ConnectionReset | ConnectionAborted | UnexpectedEof | NotConnected => {
                self.disconnect();
                ControlError::Disconnected
            }
            InvalidData => {
                self.disconnect();
                ControlError::Io(e)
            }
            _ => ControlError::Io(e),
        }
    }

    fn disconnect(&mut self) {
        self.disconnected = true;
        let _ = self.stream.shutdown(Shutdown::Both);
    }

    fn wait_until(&mut self, seqnum: u32, deadline: Instant) -> Result<Vec<u8>, ControlError> {
        loop {
            match self.next_message(deadline)? {
                Incoming::Submit(ret) if ret.seqnum == seqnum => {
                    return match ret.status {
                        0 if ret.data.len() > self.last_requested as usize => {
                            let e = io::Error::new(
                                io::ErrorKind::InvalidData,
                                format!(
                                    "RET_SUBMIT {seqnum} carries {} bytes for a {}-byte request",
                                    ret.data.len(),
                                    self.last_requested
                                ),
                            );
                            Err(self.io_failure(e))
                        }
                        0 => Ok(ret.data),
                        STATUS_STALL => Err(ControlError::Stall),
                        STATUS_NO_DEVICE | STATUS_SHUTDOWN => {
                            self.disconnect();
                            Err(ControlError::Disconnected)
                        }
                        status => Err(ControlError::Status { status }),
                    };
                }
                Incoming::Unlink {
                    target: Some(t),
                    ret,
                } if t == seqnum && ret.status == STATUS_UNLINKED => {
                    return Err(ControlError::Status {
                        status: STATUS_UNLINKED,
                    });
                }
                _ => continue,
            }
        }
    }

    /// Parse one complete message from `rx`, if there is one.
    fn parse_one(&mut self) -> Result<Option<Incoming>, UsbipWireError> {
        if self.rx.len() < URB_HEADER_LEN {
            return Ok(None);
        }
        let h = HeaderBasic::peek(&self.rx[..URB_HEADER_LEN])?;
        match h.command {
            USBIP_RET_SUBMIT => {
                // Unknown seqnum: frame it as OUT (no data); a following desync is caught by
                // the header checks of the next message.
                let (dir, requested) = self
                    .outstanding
                    .get(&h.seqnum)
                    .copied()
                    .unwrap_or((Direction::Out, 0));
                let len = URB_HEADER_LEN + RetSubmit::payload_len(&self.rx[..URB_HEADER_LEN], dir)?;
                if self.rx.len() < len {
                    return Ok(None);
                }
                let ret = RetSubmit::decode(&self.rx[..len], dir)?;
                self.rx.drain(..len);
                self.outstanding.remove(&ret.seqnum);
                self.last_requested = requested;
                Ok(Some(Incoming::Submit(ret)))
            }
            USBIP_RET_UNLINK => {
                let ret = RetUnlink::decode(&self.rx[..URB_HEADER_LEN])?;
                self.rx.drain(..URB_HEADER_LEN);
                let target = self.unlinks.remove(&ret.seqnum);
                if let Some(t) = target {
                    // Either cancelled (no RET_SUBMIT will come) or already answered.
                    self.outstanding.remove(&t);
                }
                Ok(Some(Incoming::Unlink { target, ret }))
            }
            other => Err(UsbipWireError::UnexpectedValue {
                message: "USBIP_RET_*",
                field: "command",
                offset: 0,
                expected: USBIP_RET_SUBMIT,
                found: other,
            }),
        }
    }

    fn next_message(&mut self, deadline: Instant) -> Result<Incoming, ControlError> {
        let mut chunk = [0u8; 4096];
        loop {
            match self.parse_one() {
                Ok(Some(m)) => return Ok(m),
                Ok(None) => {}
                Err(e) => return Err(self.io_failure(e.into())),
            }
            if self.disconnected {
                return Err(ControlError::Disconnected);
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(ControlError::Timeout);
            }
            let wait = (deadline - now).max(Duration::from_millis(1));
            if let Err(e) = self.stream.set_read_timeout(Some(wait)) {
                return Err(self.io_failure(e));
            }
            match self.stream.read(&mut chunk) {
                Ok(0) => {
                    self.disconnect();
                    return Err(ControlError::Disconnected);
                }
                Ok(n) => self.rx.extend_from_slice(&chunk[..n]),
                Err(e) if read_again(&e) => {}
                Err(e) => return Err(self.io_failure(e)),
            }
        }
    }
}

impl Drop for Imported {
    fn drop(&mut self) {
        let _ = self.stream.shutdown(Shutdown::Both);
    }
}

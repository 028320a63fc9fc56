//! USB/IP server: exports [`UsbDevice`]s over TCP.
//!
//! Each TCP connection carries one operation, as with Linux' `usbipd`: `OP_REQ_DEVLIST` is
//! answered and the connection closed; `OP_REQ_IMPORT` is answered and, on success, the
//! connection carries the device's URBs until either side closes it. A device can be imported
//! by one connection at a time (a second import is refused with `ST_DEV_BUSY` after a 500 ms
//! grace period for a previous connection that is just closing) and becomes importable again
//! when that connection ends. Connections are served on background threads.
//!
//! Per import connection, a reader thread decodes commands and a worker thread runs the
//! submitted URBs in order, so a `CMD_UNLINK` arriving while a URB is queued or running cancels
//! it: `RET_UNLINK` with `-ECONNRESET` and no `RET_SUBMIT` for it. Once a device reports
//! [`UsbDevice::attached`] false, the server sends the reply to the URB in progress, then
//! closes the connection.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use thiserror::Error;

use crate::descriptors::SET_FEATURE;
use crate::device::{ControlReply, SetupPacket, UsbDevice};
use crate::stream::read_again;
use crate::wire::{
    CmdSubmit, CmdUnlink, Direction, HeaderBasic, OpHeader, OpRepDevlist, OpRepImport, OpReqImport,
    RetSubmit, RetUnlink, BUSID_FIELD_LEN, NOT_ISO, OP_HEADER_LEN, OP_REQ_DEVLIST, OP_REQ_IMPORT,
    STATUS_NO_DEVICE, STATUS_STALL, STATUS_UNLINKED, ST_DEV_BUSY, ST_NODEV, URB_HEADER_LEN,
    USBIP_CMD_SUBMIT, USBIP_CMD_UNLINK,
};

/// A device shared between the server and its owner, who can lock it to inspect its state.
pub type SharedDevice = Arc<Mutex<dyn UsbDevice>>;

/// How often blocked threads look at the stop flag and at the device's `attached()`.
const POLL: Duration = Duration::from_millis(25);
/// How long a new connection may take to send its operation request.
const OP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long an import of a busy device waits for the previous import connection to wind down.
const BUSY_GRACE: Duration = Duration::from_millis(500);
/// Bus number reported for every exported device.
const BUSNUM: u32 = 1;

/// Errors from configuring or starting a [`Server`].
#[derive(Debug, Error)]
pub enum ServerError {
    /// A device is already exported under this busid.
    #[error("a device is already exported as busid `{busid}`")]
    DuplicateBusid {
        /// The busid.
        busid: String,
    },
    /// The busid is empty, longer than 31 bytes or contains a NUL byte.
    #[error("invalid busid `{busid}`: must be 1..=31 bytes without NUL")]
    InvalidBusid {
        /// The busid.
        busid: String,
    },
    /// [`Server::spawn`] was already called.
    #[error("the server is already running or was stopped")]
    AlreadySpawned,
    /// Setting up the listening socket or a thread failed.
    #[error("I/O error starting the USB/IP server: {0}")]
    Io(#[from] io::Error),
}

struct Slot {
    device: SharedDevice,
    devnum: u32,
    in_use: Arc<AtomicBool>,
}

struct Shared {
    devices: Mutex<BTreeMap<String, Slot>>,
    next_devnum: Mutex<u32>,
    stop: AtomicBool,
    connections: Mutex<Vec<JoinHandle<()>>>,
}

fn lock<T: ?Sized>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A USB/IP server exporting devices by busid.
///
/// ```no_run
/// # use dfukit_usbip::{Server, UsbDevice};
/// # fn demo(device: Box<dyn UsbDevice>) -> Result<(), Box<dyn std::error::Error>> {
/// let server = Server::bind("127.0.0.1:0")?;
/// server.add_device("1-1", device)?;
/// server.spawn()?;
/// println!("usbip --tcp-port {} list -r 127.0.0.1", server.local_addr().port());
/// server.stop();
/// # Ok(()) }
/// ```
pub struct Server {
    listener: Mutex<Option<TcpListener>>,
    local_addr: SocketAddr,
    shared: Arc<Shared>,
    accept: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("local_addr", &self.local_addr)
            .field("busids", &self.busids())
            .finish()
    }
}

impl Server {
    /// Listen on `addr` (use port 0 for an ephemeral port, then [`local_addr`](Self::local_addr)).
    /// Nothing is served until [`spawn`](Self::spawn).
    pub fn bind<A: ToSocketAddrs>(addr: A) -> io::Result<Server> {
        let listener = TcpListener::bind(addr)?;
        let local_addr = listener.local_addr()?;
        Ok(Server {
            listener: Mutex::new(Some(listener)),
            local_addr,
            shared: Arc::new(Shared {
                devices: Mutex::new(BTreeMap::new()),
                next_devnum: Mutex::new(1),
                stop: AtomicBool::new(false),
                connections: Mutex::new(Vec::new()),
            }),
            accept: Mutex::new(None),
        })
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Export `device` as `busid` (1..=31 bytes, e.g. `"1-1"`); returns the shared handle the
    /// server uses, so the owner can lock it later. Allowed before and after
    /// [`spawn`](Self::spawn).
    pub fn add_device(
        &self,
        busid: &str,
        device: Box<dyn UsbDevice>,
    ) -> Result<SharedDevice, ServerError> {
        let shared: SharedDevice = Arc::new(Mutex::new(device));
        self.insert(busid, Arc::clone(&shared))?;
        Ok(shared)
    }

    /// Export a device the caller keeps a typed handle to (`Arc<Mutex<MyDevice>>`), so it can
    /// inspect the concrete device after a test.
    pub fn add_shared<D: UsbDevice + 'static>(
        &self,
        busid: &str,
        device: Arc<Mutex<D>>,
    ) -> Result<(), ServerError> {
        self.insert(busid, device)
    }

    fn insert(&self, busid: &str, device: SharedDevice) -> Result<(), ServerError> {
        if busid.is_empty() || busid.len() >= BUSID_FIELD_LEN || busid.contains('\0') {
            return Err(ServerError::InvalidBusid {
                busid: busid.to_owned(),
            });
        }
        let mut devices = lock(&self.shared.devices);
        if devices.contains_key(busid) {
            return Err(ServerError::DuplicateBusid {
                busid: busid.to_owned(),
            });
        }
        let devnum = {
            let mut n = lock(&self.shared.next_devnum);
            let d = *n;
            *n = if *n >= 127 { 1 } else { *n + 1 };
            d
        };
        devices.insert(
            busid.to_owned(),
            Slot {
                device,
                devnum,
                in_use: Arc::new(AtomicBool::new(false)),
            },
        );
        Ok(())
    }

    /// Stop exporting `busid`; returns its device. An open import of it continues until the
    /// connection closes.
    pub fn remove_device(&self, busid: &str) -> Option<SharedDevice> {
        lock(&self.shared.devices).remove(busid).map(|s| s.device)
    }

    /// The exported busids, sorted.
    pub fn busids(&self) -> Vec<String> {
        lock(&self.shared.devices).keys().cloned().collect()
    }

    /// Whether `busid` is currently imported by a connection.
    pub fn is_imported(&self, busid: &str) -> bool {
        lock(&self.shared.devices)
            .get(busid)
            .is_some_and(|s| s.in_use.load(Ordering::SeqCst))
    }

    /// Start accepting connections on a background thread (each connection gets its own
    /// threads). Can be called once.
    pub fn spawn(&self) -> Result<(), ServerError> {
        let listener = lock(&self.listener)
            .take()
            .ok_or(ServerError::AlreadySpawned)?;
        listener.set_nonblocking(true)?;
        let shared = Arc::clone(&self.shared);
        let handle = thread::Builder::new()
            .name(format!("usbip-accept-{}", self.local_addr.port()))
            .spawn(move || accept_loop(listener, shared))?;
        *lock(&self.accept) = Some(handle);
        Ok(())
    }

    /// Stop accepting, close every connection and join all threads (returns within roughly
    /// 100 ms unless a device's `control` is itself slow). Idempotent; also done on drop.
    pub fn stop(&self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        lock(&self.listener).take();
        if let Some(h) = lock(&self.accept).take() {
            let _ = h.join();
        }
        let conns: Vec<_> = lock(&self.shared.connections).drain(..).collect();
        for h in conns {
            let _ = h.join();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    while !shared.stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, _peer)) => {
                let sh = Arc::clone(&shared);
                let spawned = thread::Builder::new()
                    .name("usbip-conn".into())
                    .spawn(move || serve_connection(stream, sh));
                if let Ok(h) = spawned {
                    let mut conns = lock(&shared.connections);
                    conns.retain(|h| !h.is_finished());
                    conns.push(h);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => thread::sleep(POLL / 2),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            // Transient accept errors (EMFILE, ECONNABORTED): back off, keep serving.
            Err(_) => thread::sleep(POLL),
        }
    }
}

/// Fill `buf` from a stream with a short read timeout, checking `stop` between reads.
/// EOF is `UnexpectedEof`; `stop()` returning true is `Interrupted`.
fn read_full(s: &mut TcpStream, buf: &mut [u8], stop: &dyn Fn() -> bool) -> io::Result<()> {
    let mut filled = 0;
    while filled < buf.len() {
        if stop() {
            return Err(io::Error::new(
                io::ErrorKind::Interrupted,
                "connection ending",
            ));
        }
        match s.read(&mut buf[filled..]) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => filled += n,
            Err(e) if read_again(&e) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn serve_connection(mut stream: TcpStream, shared: Arc<Shared>) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_nodelay(true);
    if stream.set_read_timeout(Some(POLL)).is_err() {
        return;
    }
    let started = Instant::now();
    let op_stop = || shared.stop.load(Ordering::SeqCst) || started.elapsed() > OP_TIMEOUT;
    let mut head = [0u8; OP_HEADER_LEN];
    if read_full(&mut stream, &mut head, &op_stop).is_err() {
        return;
    }
    // A wrong version closes the connection, as usbipd does.
    let Ok(h) = OpHeader::decode(&head) else {
        return;
    };
    match h.code {
        OP_REQ_DEVLIST => {
            let _ = send_devlist(&mut stream, &shared);
        }
        OP_REQ_IMPORT => {
            let mut body = [0u8; BUSID_FIELD_LEN];
            if read_full(&mut stream, &mut body, &op_stop).is_err() {
                return;
            }
            let Ok(req) = OpReqImport::decode_body(&body) else {
                return;
            };
            import(stream, &shared, &req.busid);
            return;
        }
        _ => {}
    }
    let _ = stream.shutdown(Shutdown::Both);
}

fn sys_path(busid: &str) -> String {
    format!("/sys/devices/platform/dfukit-usbip/usb{BUSNUM}/{busid}")
}

fn send_devlist(stream: &mut TcpStream, shared: &Shared) -> io::Result<()> {
    let slots: Vec<(String, SharedDevice, u32)> = lock(&shared.devices)
        .iter()
        .map(|(b, s)| (b.clone(), Arc::clone(&s.device), s.devnum))
        .collect();
    let mut rep = OpRepDevlist::default();
    for (busid, device, devnum) in slots {
        let dev = lock(&device);
        if dev.attached() {
            rep.devices.push(
                dev.info()
                    .to_exported(&sys_path(&busid), &busid, BUSNUM, devnum),
            );
        }
    }
    stream.write_all(&rep.encode()?)?;
    stream.flush()
}

/// Releases the device's import slot when the connection ends.
struct InUse(Arc<AtomicBool>);

impl Drop for InUse {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

fn import(mut stream: TcpStream, shared: &Arc<Shared>, busid: &str) {
    let found = lock(&shared.devices)
        .get(busid)
        .map(|s| (Arc::clone(&s.device), s.devnum, Arc::clone(&s.in_use)));
    let refuse = |stream: &mut TcpStream, status| {
        if let Ok(b) = (OpRepImport::Refused { status }).encode() {
            let _ = stream.write_all(&b);
        }
        let _ = stream.shutdown(Shutdown::Both);
    };
    let Some((device, devnum, in_use)) = found else {
        return refuse(&mut stream, ST_NODEV);
    };
    // The previous importer (e.g. the last dfu-util run) may have closed its socket a moment
    // ago and its threads not yet noticed: wait a little before refusing.
    let busy_since = Instant::now();
    while in_use
        .compare_exchange(false, true, Ordering::SeqCst, Ordering::SeqCst)
        .is_err()
    {
        if busy_since.elapsed() > BUSY_GRACE || shared.stop.load(Ordering::SeqCst) {
            return refuse(&mut stream, ST_DEV_BUSY);
        }
        thread::sleep(Duration::from_millis(5));
    }
    let _guard = InUse(in_use);
    let record = {
        let dev = lock(&device);
        if !dev.attached() {
            drop(dev);
            return refuse(&mut stream, ST_NODEV);
        }
        dev.info()
            .to_exported(&sys_path(busid), busid, BUSNUM, devnum)
            .device
    };
    let reply = match OpRepImport::Ok(record).encode() {
        Ok(r) => r,
        Err(_) => return,
    };
    if stream.write_all(&reply).is_err() {
        return;
    }
    serve_urbs(stream, Arc::clone(shared), device);
}

#[derive(Default)]
struct UrbState {
    queue: VecDeque<CmdSubmit>,
    current: Option<u32>,
    cancelled: HashSet<u32>,
    closed: bool,
}

struct Conn {
    state: Mutex<UrbState>,
    wake: Condvar,
    writer: Mutex<TcpStream>,
    shared: Arc<Shared>,
}

impl Conn {
    /// Write one message. Callers may hold the state lock; on error they close the connection
    /// after releasing it.
    fn send(&self, bytes: &[u8]) -> io::Result<()> {
        lock(&self.writer).write_all(bytes)
    }

    fn close(&self) {
        lock(&self.state).closed = true;
        self.wake.notify_all();
        let _ = lock(&self.writer).shutdown(Shutdown::Both);
    }

    fn ending(&self) -> bool {
        self.shared.stop.load(Ordering::SeqCst) || lock(&self.state).closed
    }

    /// Waits up to [`POLL`] for news on the state; then, if `idle` still holds, checks that the
    /// device is attached. A device that detached closes the connection: `None`.
    ///
    /// The state lock is released while the device's is taken: the device may be locked by
    /// its owner for a while, and the reader needs the state to answer unlinks.
    fn wait_watching<'a>(
        &'a self,
        st: MutexGuard<'a, UrbState>,
        device: &SharedDevice,
        idle: impl Fn(&UrbState) -> bool,
    ) -> Option<MutexGuard<'a, UrbState>> {
        let (st, _) = self
            .wake
            .wait_timeout(st, POLL)
            .unwrap_or_else(PoisonError::into_inner);
        if !idle(&st) {
            return Some(st);
        }
        drop(st);
        if !lock(device).attached() {
            self.close();
            return None;
        }
        Some(lock(&self.state))
    }
}

fn serve_urbs(mut stream: TcpStream, shared: Arc<Shared>, device: SharedDevice) {
    let Ok(writer) = stream.try_clone() else {
        return;
    };
    let conn = Arc::new(Conn {
        state: Mutex::new(UrbState::default()),
        wake: Condvar::new(),
        writer: Mutex::new(writer),
        shared,
    });
    let worker = {
        let conn = Arc::clone(&conn);
        thread::Builder::new()
            .name("usbip-urb".into())
            .spawn(move || urb_worker(&conn, &device))
    };
    let Ok(worker) = worker else {
        return;
    };
    let stop = || conn.ending();
    loop {
        if read_command(&mut stream, &conn, &stop).is_err() {
            break;
        }
    }
    conn.close();
    let _ = worker.join();
}

/// Read and act on one client command. Any error ends the connection.
fn read_command(stream: &mut TcpStream, conn: &Conn, stop: &dyn Fn() -> bool) -> io::Result<()> {
    let mut header = [0u8; URB_HEADER_LEN];
    read_full(stream, &mut header, stop)?;
    let basic = HeaderBasic::peek(&header)?;
    match basic.command {
        USBIP_CMD_SUBMIT => {
            let mut msg = header.to_vec();
            msg.resize(URB_HEADER_LEN + CmdSubmit::payload_len(&header)?, 0);
            read_full(stream, &mut msg[URB_HEADER_LEN..], stop)?;
            let cmd = CmdSubmit::decode(&msg)?;
            lock(&conn.state).queue.push_back(cmd);
            conn.wake.notify_all();
            Ok(())
        }
        USBIP_CMD_UNLINK => {
            let cmd = CmdUnlink::decode(&header)?;
            let mut st = lock(&conn.state);
            let target = cmd.unlink_seqnum;
            let status = if let Some(pos) = st.queue.iter().position(|c| c.seqnum == target) {
                st.queue.remove(pos);
                STATUS_UNLINKED
            } else if st.current == Some(target) {
                st.cancelled.insert(target);
                conn.wake.notify_all();
                STATUS_UNLINKED
            } else {
                0
            };
            let ret = RetUnlink {
                seqnum: cmd.seqnum,
                status,
                ..RetUnlink::default()
            };
            // Sent with the state locked so it cannot overtake a RET_SUBMIT being sent.
            let sent = conn.send(&ret.encode());
            drop(st);
            sent
        }
        other => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("unexpected USB/IP command {other:#x}"),
        )),
    }
}

fn urb_worker(conn: &Conn, device: &SharedDevice) {
    loop {
        let cmd = {
            let mut st = lock(&conn.state);
            loop {
                if st.closed || conn.shared.stop.load(Ordering::SeqCst) {
                    return;
                }
                if let Some(c) = st.queue.pop_front() {
                    st.current = Some(c.seqnum);
                    break c;
                }
                // Idle: notice a device that detached on its own.
                let Some(g) = conn.wait_watching(st, device, |st| st.queue.is_empty()) else {
                    return;
                };
                st = g;
            }
        };
        let (ret, attached) = {
            let mut dev = lock(device);
            let ret = process_submit(&mut *dev, &cmd);
            (ret, dev.attached())
        };
        let Some(ret) = ret else {
            // The device NAKs forever: the URB completes only by being
            // unlinked (the reader answers the CMD_UNLINK), by the device
            // detaching, or by the connection ending.
            if !wait_for_unlink(conn, device, cmd.seqnum) {
                return;
            }
            continue;
        };
        let sent = {
            let mut st = lock(&conn.state);
            st.current = None;
            if st.cancelled.remove(&cmd.seqnum) {
                Ok(())
            } else {
                // Sent with the state locked so a RET_UNLINK cannot overtake it.
                conn.send(&ret.encode())
            }
        };
        if sent.is_err() || !attached {
            conn.close();
            return;
        }
    }
}

/// Waits until URB `seqnum`, which the device will never complete, is unlinked. Returns false
/// when the connection ends first, or when the device detaches meanwhile: then the connection
/// is closed, as for a device that detaches while idle, so the client sees the device gone at
/// once instead of only when its timeout expires (never, for a libusb timeout of 0).
fn wait_for_unlink(conn: &Conn, device: &SharedDevice, seqnum: u32) -> bool {
    let mut st = lock(&conn.state);
    loop {
        if st.cancelled.remove(&seqnum) {
            st.current = None;
            return true;
        }
        if st.closed || conn.shared.stop.load(Ordering::SeqCst) {
            return false;
        }
        match conn.wait_watching(st, device, |st| !st.cancelled.contains(&seqnum)) {
            Some(g) => st = g,
            None => return false,
        }
    }
}

/// bmRequestType of a hub-class request to a port (class, recipient other).
pub const PORT_RESET_REQUEST_TYPE: u8 = 0x23;
/// Hub port feature selector PORT_RESET.
pub(crate) const PORT_RESET: u16 = 4;

/// Run one URB against the device. Endpoint 0 is control; other endpoints are not implemented
/// yet and complete with `-EPIPE`. `None`: the device never answers (see
/// [`ControlReply::NoResponse`]).
fn process_submit(device: &mut dyn UsbDevice, cmd: &CmdSubmit) -> Option<RetSubmit> {
    let mut ret = RetSubmit {
        seqnum: cmd.seqnum,
        number_of_packets: NOT_ISO,
        ..RetSubmit::default()
    };
    match cmd.ep {
        0 => {
            let setup = SetupPacket::from_bytes(cmd.setup);
            // SET_FEATURE(PORT_RESET) to the hub port (class, recipient
            // other): a bus reset, handled here as usbip-host does.
            if setup.request_type == PORT_RESET_REQUEST_TYPE
                && setup.request == SET_FEATURE
                && setup.value == PORT_RESET
            {
                device.reset();
                return Some(ret);
            }
            match (cmd.direction, device.control(&setup, &cmd.data)) {
                (Direction::In, ControlReply::Data(mut d)) => {
                    let max = usize::from(setup.length).min(cmd.transfer_buffer_length as usize);
                    d.truncate(max);
                    ret.actual_length = d.len() as u32;
                    ret.data = d;
                }
                (Direction::Out, ControlReply::Data(_)) => {
                    ret.actual_length = cmd.data.len() as u32;
                }
                (_, ControlReply::Stall) => ret.status = STATUS_STALL,
                (_, ControlReply::Disconnected) => ret.status = STATUS_NO_DEVICE,
                (_, ControlReply::NoResponse) => return None,
            }
        }
        _ => ret.status = STATUS_STALL,
    }
    Some(ret)
}

//! A plain DFU 1.1 device whose alternate settings are byte streams.
//!
//! U-Boot's `f_dfu`, TF-A's `usb_dfu.c` and the STM32MP ROM code do not
//! address memory the way DfuSe does: each alternate setting is a partition
//! (or a RAM buffer, or a virtual file) written from its start, block after
//! block, and read back the same way. [`StreamDevice`] is that protocol
//! engine; what a block *means* is up to a [`StreamBackend`].
//!
//! Like [`super::DfuDevice`] it is sans-IO: time comes in as an [`Instant`]
//! with each request, and the work a block causes is reported by the
//! backend as a duration. The device then answers dfuDNBUSY, with
//! bwPollTimeout set to the time left, until that duration has passed.
//!
//! Choices where DFU 1.1 leaves room (all as U-Boot's `f_dfu` behaves):
//!
//! * a download starts at block 0 and block numbers follow each other
//!   (wrapping at 65535); any other number is refused with dfuERROR /
//!   errUNKNOWN and a STALL (U-Boot: "dfu_write: Wrong sequence number!");
//! * block numbers of UPLOAD are not checked: the stream offset advances by
//!   what was returned;
//! * a request other than GETSTATUS while the device is in dfuDNBUSY or
//!   dfuMANIFEST stalls and sets dfuERROR/errSTALLEDPKT (DFU 1.1 state
//!   table);
//! * DETACH is honoured in dfuIDLE only.

use super::{DeviceEvent, Dialect, Reply, MAX_TRANSFER_SIZE};
use crate::wire::{
    FunctionalDescriptor, GetStatus, Request, SetupPacket, State, Status, MAX_POLL_TIMEOUT_MS,
    REQUEST_TYPE_STANDARD_INTERFACE_OUT, SET_INTERFACE,
};
use core::time::Duration;
use dfukit_core::Instant;
use heapless::Deque;

/// What the alternate settings of a [`StreamDevice`] are connected to.
pub trait StreamBackend {
    /// Number of alternate settings (alts `0..n`).
    fn alt_count(&self) -> u8;

    /// A downloaded block, `offset` bytes into alt `alt`'s stream.
    /// `Ok(d)`: accepted; the work takes `d` (the device reports dfuDNBUSY
    /// with bwPollTimeout until now + `d`). `Err(status)`: dfuERROR with
    /// that status.
    fn write(&mut self, alt: u8, offset: u64, data: &[u8]) -> Result<Duration, Status>;

    /// End of download (zero-length DNLOAD; called at the GETSTATUS that
    /// follows it): `total` bytes were sent. `Ok(d)`: dfuMANIFEST for `d`,
    /// then dfuIDLE (manifestation tolerant dialect) or
    /// dfuMANIFEST-WAIT-RESET. `Err(status)`: dfuERROR.
    fn manifest(&mut self, alt: u8, total: u64) -> Result<Duration, Status>;

    /// Upload: fill `buf` from `offset`; a count shorter than `buf` ends the
    /// upload (back to dfuIDLE). `Err(status)`: dfuERROR.
    fn read(&mut self, alt: u8, offset: u64, buf: &mut [u8]) -> Result<usize, Status>;
}

/// Work that dfuDNLOAD-SYNC / dfuMANIFEST-SYNC hands to the next GETSTATUS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sync {
    /// Nothing: the previous work has finished.
    Done,
    /// A block of this many bytes is in the buffer.
    Block(u16),
    /// The download ended; manifest it.
    Manifest,
}

/// The stream DFU device core. See the module documentation.
pub struct StreamDevice {
    dialect: Dialect,
    interface: u16,
    transfer_size: u16,
    detach_timeout_ms: u16,
    state: State,
    status: Status,
    alt: u8,
    sync: Sync,
    buf: [u8; MAX_TRANSFER_SIZE],
    /// Next expected DNLOAD block number.
    block: u16,
    /// Bytes accepted (download) or returned (upload) on the current alt.
    offset: u64,
    /// End of the work in progress (dfuDNBUSY, dfuMANIFEST).
    busy_until: Instant,
    /// Write each block inside the request that reports on it (see
    /// [`StreamDevice::set_synchronous_writes`]).
    synchronous_writes: bool,
    /// When the reply to the last request can complete.
    reply_at: Instant,
    events: Deque<DeviceEvent, 8>,
}

impl StreamDevice {
    /// A device in dfuIDLE on alt 0. `transfer_size` is clamped to
    /// `1..=MAX_TRANSFER_SIZE`, the size of the one block buffer the core
    /// holds; the functional descriptor reports the clamped value, so the
    /// host never sends a larger block.
    pub fn new(
        dialect: Dialect,
        interface: u16,
        transfer_size: u16,
        detach_timeout_ms: u16,
    ) -> Self {
        StreamDevice {
            dialect,
            interface,
            transfer_size: transfer_size.clamp(1, MAX_TRANSFER_SIZE as u16),
            detach_timeout_ms,
            state: State::DfuIdle,
            status: Status::Ok,
            alt: 0,
            sync: Sync::Done,
            buf: [0; MAX_TRANSFER_SIZE],
            block: 0,
            offset: 0,
            busy_until: Instant::ZERO,
            synchronous_writes: false,
            reply_at: Instant::ZERO,
            events: Deque::new(),
        }
    }

    /// Writes each block while the GETSTATUS that follows it is pending
    /// instead of in dfuDNBUSY. U-Boot's `f_dfu` does this: it calls
    /// `dfu_write` from the request's completion handler, so its CPU is busy
    /// and the controller NAKs the host until the block is stored; then it
    /// answers dfuDNLOAD-IDLE with bwPollTimeout 0. That avoids the 1 ms
    /// granularity of bwPollTimeout, which would otherwise cap a 4 KiB
    /// block at one per millisecond. The environment delays the reply until
    /// [`StreamDevice::reply_at`].
    pub fn set_synchronous_writes(&mut self, on: bool) {
        self.synchronous_writes = on;
    }

    /// When the reply to the request just handled completes: later than the
    /// request's arrival while a synchronous write runs (the device NAKs).
    pub fn reply_at(&self) -> Instant {
        self.reply_at
    }

    /// The functional descriptor to put in the configuration descriptor.
    pub fn functional_descriptor(&self) -> FunctionalDescriptor {
        self.dialect
            .descriptor(self.transfer_size, self.detach_timeout_ms)
    }

    /// Current DFU state (as of the last request).
    pub fn state(&self) -> State {
        self.state
    }

    /// Current status code.
    pub fn status(&self) -> Status {
        self.status
    }

    /// Selected alternate setting.
    pub fn alt(&self) -> u8 {
        self.alt
    }

    /// The next event for the environment.
    pub fn poll_event(&mut self) -> Option<DeviceEvent> {
        self.events.pop_front()
    }

    /// A USB bus reset: back to dfuIDLE on alt 0 (a reset also resets the
    /// configuration, hence the alternate setting), any transfer dropped.
    pub fn usb_reset(&mut self) {
        self.state = State::DfuIdle;
        self.status = Status::Ok;
        self.alt = 0;
        self.sync = Sync::Done;
        self.block = 0;
        self.offset = 0;
    }

    /// Handles one control request addressed to the DFU interface (class
    /// requests and SET_INTERFACE). `data` is the OUT data stage; IN data is
    /// written to `reply`, which must hold `setup.length` bytes.
    pub fn control(
        &mut self,
        now: Instant,
        setup: &SetupPacket,
        data: &[u8],
        reply: &mut [u8],
        backend: &mut impl StreamBackend,
    ) -> Reply {
        self.settle(now);
        let busy = matches!(self.state, State::DfuDnbusy | State::DfuManifest);
        if setup.request_type == REQUEST_TYPE_STANDARD_INTERFACE_OUT
            && setup.request == SET_INTERFACE
        {
            if busy {
                return self.stall_error();
            }
            if self.state == State::DfuManifestWaitReset {
                // Only a USB reset gets the device out.
                return Reply::Stall;
            }
            let alt = u8::try_from(setup.value).ok();
            return match alt {
                Some(a) if setup.index == self.interface && a < backend.alt_count() => {
                    self.alt = a;
                    // A new alt starts over: U-Boot and ST reset their DFU
                    // state on SET_INTERFACE.
                    self.state = State::DfuIdle;
                    self.status = Status::Ok;
                    self.sync = Sync::Done;
                    self.block = 0;
                    self.offset = 0;
                    Reply::Ack
                }
                _ => Reply::Stall,
            };
        }
        let Some(req) = super::class_request(setup, self.interface, data, reply) else {
            return Reply::Stall;
        };
        if busy && req != Request::GetStatus {
            return self.stall_error();
        }
        if self.state == State::DfuManifestWaitReset {
            // Only a USB reset gets the device out.
            return Reply::Stall;
        }
        match req {
            Request::GetStatus => self.get_status(now, setup, reply, backend),
            Request::GetState => super::get_state(self.state, setup, reply),
            Request::ClrStatus => {
                super::clear_status(&self.dialect, true, &mut self.state, &mut self.status)
            }
            // DFU 1.1 allows ABORT only where no work is pending: in
            // dfuMANIFEST-SYNC it would drop the manifestation (U-Boot's
            // end-of-partition step) without a word.
            Request::Abort => match self.state {
                State::DfuIdle | State::DfuDnloadIdle | State::DfuUploadIdle => {
                    self.state = State::DfuIdle;
                    self.sync = Sync::Done;
                    self.offset = 0;
                    Reply::Ack
                }
                _ => self.stall_error(),
            },
            Request::Detach => {
                if self.state != State::DfuIdle {
                    return self.stall_error();
                }
                self.push_event(DeviceEvent::Detach {
                    timeout_ms: setup.value,
                });
                if self.dialect.will_detach {
                    self.push_event(DeviceEvent::UsbReset);
                }
                Reply::Ack
            }
            Request::Dnload => self.dnload(setup, data),
            Request::Upload => self.upload(setup, reply, backend),
        }
    }

    /// Applies the passage of time: finished busy work moves dfuDNBUSY to
    /// dfuDNLOAD-SYNC and dfuMANIFEST to dfuMANIFEST-SYNC (tolerant) or
    /// dfuMANIFEST-WAIT-RESET, as the DFU 1.1 state diagram does when
    /// bwPollTimeout has elapsed.
    fn settle(&mut self, now: Instant) {
        if now < self.busy_until {
            return;
        }
        match self.state {
            State::DfuDnbusy => {
                self.state = State::DfuDnloadSync;
                self.sync = Sync::Done;
            }
            State::DfuManifest => {
                self.sync = Sync::Done;
                if self.dialect.manifestation_tolerant {
                    self.state = State::DfuManifestSync;
                } else {
                    self.state = State::DfuManifestWaitReset;
                    self.push_event(DeviceEvent::Manifested);
                }
            }
            _ => {}
        }
    }

    fn push_event(&mut self, e: DeviceEvent) {
        super::push_newest(&mut self.events, e);
    }

    fn fail(&mut self, status: Status) {
        self.state = State::DfuError;
        self.status = status;
        self.sync = Sync::Done;
    }

    /// A request that is not valid in this state: STALL and dfuERROR. In
    /// dfuERROR already, the status that explains the error is kept.
    fn stall_error(&mut self) -> Reply {
        if self.state == State::DfuError {
            return Reply::Stall;
        }
        self.fail(Status::ErrStalledPkt);
        Reply::Stall
    }

    fn dnload(&mut self, setup: &SetupPacket, data: &[u8]) -> Reply {
        if !matches!(self.state, State::DfuIdle | State::DfuDnloadIdle) {
            return self.stall_error();
        }
        if data.len() > self.transfer_size as usize {
            return self.stall_error();
        }
        if data.is_empty() {
            // End of download; plain DFU needs a download first.
            if self.state != State::DfuDnloadIdle {
                return self.stall_error();
            }
            self.sync = Sync::Manifest;
            self.state = State::DfuManifestSync;
            return Reply::Ack;
        }
        if self.state == State::DfuIdle {
            self.block = 0;
            self.offset = 0;
        }
        if setup.value != self.block {
            // U-Boot: "dfu_write: Wrong sequence number!".
            self.fail(Status::ErrUnknown);
            return Reply::Stall;
        }
        self.block = self.block.wrapping_add(1);
        self.buf[..data.len()].copy_from_slice(data);
        self.sync = Sync::Block(data.len() as u16);
        self.state = State::DfuDnloadSync;
        Reply::Ack
    }

    fn upload(
        &mut self,
        setup: &SetupPacket,
        reply: &mut [u8],
        backend: &mut impl StreamBackend,
    ) -> Reply {
        if !matches!(self.state, State::DfuIdle | State::DfuUploadIdle) {
            return self.stall_error();
        }
        let want = setup.length as usize;
        if want > self.transfer_size as usize {
            return self.stall_error();
        }
        if self.state == State::DfuIdle {
            self.offset = 0;
        }
        match backend.read(self.alt, self.offset, &mut reply[..want]) {
            Ok(n) => {
                let n = n.min(want);
                self.offset += n as u64;
                // A short frame ends the upload.
                self.state = if n < want {
                    State::DfuIdle
                } else {
                    State::DfuUploadIdle
                };
                Reply::In(n)
            }
            Err(s) => {
                self.fail(s);
                Reply::Stall
            }
        }
    }

    fn get_status(
        &mut self,
        now: Instant,
        setup: &SetupPacket,
        reply: &mut [u8],
        backend: &mut impl StreamBackend,
    ) -> Reply {
        if (setup.length as usize) < GetStatus::LEN {
            return Reply::Stall;
        }
        match (self.state, self.sync) {
            (State::DfuDnloadSync, Sync::Block(len)) => {
                let len = len as usize;
                match backend.write(self.alt, self.offset, &self.buf[..len]) {
                    Ok(d) => {
                        self.offset += len as u64;
                        self.sync = Sync::Done;
                        if self.synchronous_writes {
                            self.reply_at = now + d;
                            self.state = State::DfuDnloadIdle;
                        } else if d.is_zero() {
                            self.state = State::DfuDnloadIdle;
                        } else {
                            self.state = State::DfuDnbusy;
                            self.busy_until = now + d;
                        }
                    }
                    Err(s) => self.fail(s),
                }
            }
            (State::DfuDnloadSync, _) => self.state = State::DfuDnloadIdle,
            (State::DfuManifestSync, Sync::Manifest) => {
                match backend.manifest(self.alt, self.offset) {
                    Ok(d) => {
                        // DFU 1.1 always passes through dfuMANIFEST, even
                        // for instant work (bwPollTimeout 0).
                        self.sync = Sync::Done;
                        self.state = State::DfuManifest;
                        self.busy_until = now + d;
                    }
                    Err(s) => self.fail(s),
                }
            }
            (State::DfuManifestSync, _) => {
                self.state = State::DfuIdle;
                self.offset = 0;
                self.push_event(DeviceEvent::Manifested);
            }
            _ => {}
        }
        let poll = if matches!(self.state, State::DfuDnbusy | State::DfuManifest) {
            self.busy_until.saturating_duration_since(now)
        } else {
            Duration::ZERO
        };
        let ms = u32::try_from(poll.as_micros().div_ceil(1000)).unwrap_or(u32::MAX);
        let s = GetStatus {
            status: self.status,
            poll_timeout_ms: ms.min(MAX_POLL_TIMEOUT_MS),
            state: self.state,
            string_index: 0,
        };
        reply[..GetStatus::LEN].copy_from_slice(&s.to_bytes());
        Reply::In(GetStatus::LEN)
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use crate::wire::DfuSetup;
    use std::vec::Vec;

    /// Two alts backed by vectors; alt 1 refuses writes past 8 bytes and
    /// fails manifestation when told to.
    struct VecBackend {
        alts: [Vec<u8>; 2],
        work: Duration,
        manifest_time: Duration,
        fail_manifest: bool,
        manifested: Vec<(u8, u64)>,
    }

    impl VecBackend {
        fn new(work_ms: u64) -> Self {
            VecBackend {
                alts: [Vec::new(), Vec::new()],
                work: Duration::from_millis(work_ms),
                manifest_time: Duration::from_millis(7),
                fail_manifest: false,
                manifested: Vec::new(),
            }
        }
    }

    impl StreamBackend for VecBackend {
        fn alt_count(&self) -> u8 {
            2
        }
        fn write(&mut self, alt: u8, offset: u64, data: &[u8]) -> Result<Duration, Status> {
            let v = &mut self.alts[alt as usize];
            if alt == 1 && offset as usize + data.len() > 8 {
                return Err(Status::ErrAddress);
            }
            assert_eq!(offset as usize, v.len(), "offsets are sequential");
            v.extend_from_slice(data);
            Ok(self.work)
        }
        fn manifest(&mut self, alt: u8, total: u64) -> Result<Duration, Status> {
            if self.fail_manifest {
                return Err(Status::ErrVerify);
            }
            self.manifested.push((alt, total));
            Ok(self.manifest_time)
        }
        fn read(&mut self, alt: u8, offset: u64, buf: &mut [u8]) -> Result<usize, Status> {
            let v = &self.alts[alt as usize];
            let start = (offset as usize).min(v.len());
            let n = (v.len() - start).min(buf.len());
            buf[..n].copy_from_slice(&v[start..start + n]);
            Ok(n)
        }
    }

    fn t(ms: u64) -> Instant {
        Instant::from_micros(ms * 1000)
    }

    fn req(
        d: &mut StreamDevice,
        b: &mut VecBackend,
        now: Instant,
        r: Request,
        value: u16,
        data: &[u8],
    ) -> Reply {
        let len = if r.is_in() { 64 } else { data.len() as u16 };
        let mut buf = [0u8; 64];
        d.control(now, &SetupPacket::dfu(r, value, 0, len), data, &mut buf, b)
    }

    fn status(d: &mut StreamDevice, b: &mut VecBackend, now: Instant) -> GetStatus {
        let mut buf = [0u8; 6];
        let r = d.control(
            now,
            &SetupPacket::dfu(Request::GetStatus, 0, 0, 6),
            &[],
            &mut buf,
            b,
        );
        assert_eq!(r, Reply::In(6));
        GetStatus::from_bytes(&buf).unwrap()
    }

    fn dev(dialect: Dialect) -> StreamDevice {
        StreamDevice::new(dialect, 0, 16, 100)
    }

    #[test]
    fn download_polls_busy_then_manifests() {
        let mut d = dev(Dialect::U_BOOT);
        let mut b = VecBackend::new(10);
        assert_eq!(
            req(
                &mut d,
                &mut b,
                t(0),
                Request::Dnload,
                0,
                b"0123456789abcdef"
            ),
            Reply::Ack
        );
        assert_eq!(d.state(), State::DfuDnloadSync);
        let s = status(&mut d, &mut b, t(0));
        assert_eq!((s.state, s.poll_timeout_ms), (State::DfuDnbusy, 10));
        // Polled early: still busy, with the time left.
        let s = status(&mut d, &mut b, t(4));
        assert_eq!((s.state, s.poll_timeout_ms), (State::DfuDnbusy, 6));
        let s = status(&mut d, &mut b, t(10));
        assert_eq!(s.state, State::DfuDnloadIdle);
        assert_eq!(
            req(&mut d, &mut b, t(11), Request::Dnload, 1, b"xyz"),
            Reply::Ack
        );
        assert_eq!(status(&mut d, &mut b, t(11)).state, State::DfuDnbusy);
        assert_eq!(status(&mut d, &mut b, t(21)).state, State::DfuDnloadIdle);
        assert_eq!(
            req(&mut d, &mut b, t(22), Request::Dnload, 2, &[]),
            Reply::Ack
        );
        assert_eq!(d.state(), State::DfuManifestSync);
        let s = status(&mut d, &mut b, t(22));
        assert_eq!((s.state, s.poll_timeout_ms), (State::DfuManifest, 7));
        assert_eq!(b.manifested, [(0, 19)]);
        assert_eq!(status(&mut d, &mut b, t(29)).state, State::DfuIdle);
        assert_eq!(d.poll_event(), Some(DeviceEvent::Manifested));
        assert_eq!(&b.alts[0][..], b"0123456789abcdefxyz");
    }

    #[test]
    fn abort_cannot_drop_a_pending_manifestation_and_errors_keep_their_status() {
        let mut d = dev(Dialect::U_BOOT);
        let mut b = VecBackend::new(0);
        assert_eq!(
            req(&mut d, &mut b, t(0), Request::Dnload, 0, &[1; 16]),
            Reply::Ack
        );
        assert_eq!(status(&mut d, &mut b, t(0)).state, State::DfuDnloadIdle);
        assert_eq!(
            req(&mut d, &mut b, t(0), Request::Dnload, 1, &[]),
            Reply::Ack
        );
        assert_eq!(d.state(), State::DfuManifestSync);
        // ABORT here would skip the manifestation: refused.
        assert_eq!(
            req(&mut d, &mut b, t(0), Request::Abort, 0, &[]),
            Reply::Stall
        );
        assert_eq!(
            (d.state(), d.status()),
            (State::DfuError, Status::ErrStalledPkt)
        );
        assert!(b.manifested.is_empty());
        // A second bad request keeps the first status.
        assert_eq!(
            req(&mut d, &mut b, t(0), Request::Detach, 0, &[]),
            Reply::Stall
        );
        assert_eq!(d.status(), Status::ErrStalledPkt);

        let mut d = dev(Dialect::ST_ROM);
        let mut b = VecBackend::new(0);
        assert_eq!(
            req(&mut d, &mut b, t(0), Request::Dnload, 0, &[1; 16]),
            Reply::Ack
        );
        status(&mut d, &mut b, t(0));
        req(&mut d, &mut b, t(0), Request::Dnload, 1, &[]);
        status(&mut d, &mut b, t(0));
        // Manifestation (7 ms) is over: the device waits for a reset and
        // answers nothing.
        assert_eq!(
            req(&mut d, &mut b, t(10), Request::GetStatus, 0, &[]),
            Reply::Stall
        );
        assert_eq!(d.state(), State::DfuManifestWaitReset);
        // Only a USB reset leaves dfuMANIFEST-WAIT-RESET, not SET_INTERFACE.
        let mut buf = [0u8; 8];
        let set_interface = SetupPacket {
            request_type: REQUEST_TYPE_STANDARD_INTERFACE_OUT,
            request: SET_INTERFACE,
            value: 1,
            index: 0,
            length: 0,
        };
        assert_eq!(
            d.control(t(10), &set_interface, &[], &mut buf, &mut b),
            Reply::Stall
        );
        assert_eq!(d.state(), State::DfuManifestWaitReset);
    }

    #[test]
    fn synchronous_writes_hold_the_reply_instead_of_reporting_busy() {
        let mut d = dev(Dialect::U_BOOT);
        d.set_synchronous_writes(true);
        let mut b = VecBackend::new(3);
        assert_eq!(
            req(&mut d, &mut b, t(0), Request::Dnload, 0, &[1; 16]),
            Reply::Ack
        );
        let s = status(&mut d, &mut b, t(1));
        // Written inside the request: idle at once, poll timeout 0, and the
        // reply completes when the 3 ms write does.
        assert_eq!((s.state, s.poll_timeout_ms), (State::DfuDnloadIdle, 0));
        assert_eq!(d.reply_at(), t(4));
        assert_eq!(b.alts[0], [1; 16]);
        assert_eq!(
            req(&mut d, &mut b, t(4), Request::Dnload, 1, &[2; 16]),
            Reply::Ack
        );
        assert_eq!(status(&mut d, &mut b, t(4)).state, State::DfuDnloadIdle);
        assert_eq!(b.alts[0].len(), 32);
    }

    #[test]
    fn instant_work_skips_dnbusy_and_non_tolerant_waits_for_reset() {
        let mut d = dev(Dialect::ST_ROM);
        let mut b = VecBackend::new(0);
        b.manifest_time = Duration::ZERO;
        req(&mut d, &mut b, t(0), Request::Dnload, 0, b"ab");
        assert_eq!(status(&mut d, &mut b, t(0)).state, State::DfuDnloadIdle);
        req(&mut d, &mut b, t(0), Request::Dnload, 1, &[]);
        assert_eq!(status(&mut d, &mut b, t(0)).state, State::DfuManifest);
        assert_eq!(
            req(&mut d, &mut b, t(1), Request::GetState, 0, &[]),
            Reply::Stall
        );
        assert_eq!(d.state(), State::DfuManifestWaitReset);
        assert_eq!(d.poll_event(), Some(DeviceEvent::Manifested));
        d.usb_reset();
        assert_eq!(d.state(), State::DfuIdle);
    }

    #[test]
    fn upload_reads_at_running_offset_until_short_frame() {
        let mut d = dev(Dialect::U_BOOT);
        let mut b = VecBackend::new(0);
        b.alts[0] = (0u8..40).collect();
        let mut buf = [0u8; 16];
        let mut got = Vec::new();
        loop {
            let r = d.control(
                t(0),
                &SetupPacket::dfu(Request::Upload, 0, 0, 16),
                &[],
                &mut buf,
                &mut b,
            );
            let Reply::In(n) = r else { panic!("{r:?}") };
            got.extend_from_slice(&buf[..n]);
            if n < 16 {
                break;
            }
            assert_eq!(d.state(), State::DfuUploadIdle);
        }
        assert_eq!(got, b.alts[0]);
        assert_eq!(d.state(), State::DfuIdle);
        // More than wTransferSize is refused.
        let mut big = [0u8; 32];
        let r = d.control(
            t(0),
            &SetupPacket::dfu(Request::Upload, 0, 0, 32),
            &[],
            &mut big,
            &mut b,
        );
        assert_eq!(r, Reply::Stall);
        assert_eq!(d.status(), Status::ErrStalledPkt);
    }

    #[test]
    fn clrstatus_strict_versus_lenient() {
        let mut b = VecBackend::new(0);
        let mut strict = dev(Dialect::TF_A);
        assert_eq!(
            req(&mut strict, &mut b, t(0), Request::ClrStatus, 0, &[]),
            Reply::Ack
        );
        let s = status(&mut strict, &mut b, t(0));
        assert_eq!((s.state, s.status), (State::DfuError, Status::ErrUnknown));
        req(&mut strict, &mut b, t(0), Request::ClrStatus, 0, &[]);
        assert_eq!(strict.state(), State::DfuIdle);

        let mut lenient = dev(Dialect::U_BOOT);
        req(&mut lenient, &mut b, t(0), Request::ClrStatus, 0, &[]);
        let s = status(&mut lenient, &mut b, t(0));
        assert_eq!((s.state, s.status), (State::DfuIdle, Status::Ok));
    }

    #[test]
    fn backend_errors_set_dfu_error() {
        let mut d = dev(Dialect::U_BOOT);
        let mut b = VecBackend::new(0);
        let set_alt = SetupPacket::set_interface(0, 1);
        assert_eq!(d.control(t(0), &set_alt, &[], &mut [], &mut b), Reply::Ack);
        assert_eq!(d.alt(), 1);
        req(&mut d, &mut b, t(0), Request::Dnload, 0, b"0123456789");
        let s = status(&mut d, &mut b, t(0));
        assert_eq!((s.state, s.status), (State::DfuError, Status::ErrAddress));
        req(&mut d, &mut b, t(0), Request::ClrStatus, 0, &[]);

        b.fail_manifest = true;
        req(&mut d, &mut b, t(0), Request::Dnload, 0, b"01");
        status(&mut d, &mut b, t(0));
        req(&mut d, &mut b, t(0), Request::Dnload, 1, &[]);
        let s = status(&mut d, &mut b, t(0));
        assert_eq!((s.state, s.status), (State::DfuError, Status::ErrVerify));
        // No such alt.
        let bad = SetupPacket::set_interface(0, 2);
        assert_eq!(d.control(t(0), &bad, &[], &mut [], &mut b), Reply::Stall);
    }

    #[test]
    fn wrong_block_number_is_refused() {
        let mut d = dev(Dialect::U_BOOT);
        let mut b = VecBackend::new(0);
        req(&mut d, &mut b, t(0), Request::Dnload, 0, b"ab");
        status(&mut d, &mut b, t(0));
        assert_eq!(
            req(&mut d, &mut b, t(0), Request::Dnload, 2, b"cd"),
            Reply::Stall
        );
        assert_eq!(
            (d.state(), d.status()),
            (State::DfuError, Status::ErrUnknown)
        );
        assert_eq!(&b.alts[0][..], b"ab");
        // A download must start at block 0.
        req(&mut d, &mut b, t(0), Request::ClrStatus, 0, &[]);
        assert_eq!(
            req(&mut d, &mut b, t(0), Request::Dnload, 5, b"ab"),
            Reply::Stall
        );
    }

    #[test]
    fn requests_while_busy_stall() {
        let mut d = dev(Dialect::U_BOOT);
        let mut b = VecBackend::new(50);
        req(&mut d, &mut b, t(0), Request::Dnload, 0, b"ab");
        assert_eq!(status(&mut d, &mut b, t(0)).state, State::DfuDnbusy);
        assert_eq!(
            req(&mut d, &mut b, t(10), Request::Dnload, 1, b"cd"),
            Reply::Stall
        );
        let s = status(&mut d, &mut b, t(10));
        assert_eq!(
            (s.state, s.status),
            (State::DfuError, Status::ErrStalledPkt)
        );
    }

    #[test]
    fn detach_in_idle_raises_events() {
        let mut b = VecBackend::new(0);
        let mut d = dev(Dialect::U_BOOT);
        assert_eq!(
            req(&mut d, &mut b, t(0), Request::Detach, 500, &[]),
            Reply::Ack
        );
        assert_eq!(
            d.poll_event(),
            Some(DeviceEvent::Detach { timeout_ms: 500 })
        );
        assert_eq!(d.poll_event(), Some(DeviceEvent::UsbReset));
        let mut d = dev(Dialect::TF_A);
        req(&mut d, &mut b, t(0), Request::Detach, 1, &[]);
        assert_eq!(d.poll_event(), Some(DeviceEvent::Detach { timeout_ms: 1 }));
        assert_eq!(d.poll_event(), None);
    }

    #[test]
    fn transfer_size_is_clamped() {
        let d = StreamDevice::new(Dialect::U_BOOT, 0, u16::MAX, 0);
        assert_eq!(d.functional_descriptor().transfer_size, 4096);
        let d = StreamDevice::new(Dialect::U_BOOT, 0, 0, 0);
        assert_eq!(d.functional_descriptor().transfer_size, 1);
    }
}

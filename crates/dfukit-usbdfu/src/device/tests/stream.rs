//! [`StreamDevice`]: alternates as byte streams.

use super::super::stream::{StreamBackend, StreamDevice};
use super::super::{DeviceEvent, Dialect, Reply};
use crate::wire::{
    DfuRequest, GetStatus, SetupPacket, State, Status, REQUEST_TYPE_STANDARD_INTERFACE_OUT,
    SET_INTERFACE,
};
use core::time::Duration;
use dfukit_core::Instant;
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
    r: DfuRequest,
    value: u16,
    data: &[u8],
) -> Reply {
    super::req(&mut |s, o, i| d.control(now, s, o, i, b), r, value, data)
}

/// A request the device must accept.
fn ack(reply: Reply) {
    assert_eq!(reply, Reply::Ack);
}

/// A request refused as not valid in the state: STALL,
/// dfuERROR/errSTALLEDPKT.
fn stalled_into_error(reply: Reply, d: &StreamDevice) {
    assert_eq!(reply, Reply::Stall);
    assert_eq!(
        (d.state(), d.status()),
        (State::DfuError, Status::ErrStalledPkt)
    );
}

fn status(d: &mut StreamDevice, b: &mut VecBackend, now: Instant) -> GetStatus {
    super::status(&mut |s, o, i| d.control(now, s, o, i, b))
}

fn upload(d: &mut StreamDevice, b: &mut VecBackend, now: Instant, buf: &mut [u8]) -> Reply {
    super::upload(&mut |s, o, i| d.control(now, s, o, i, b), 0, buf)
}

fn dev(dialect: Dialect) -> StreamDevice {
    StreamDevice::new(dialect, 0, 16, 100)
}

#[test]
fn download_polls_busy_then_manifests() {
    let mut d = dev(Dialect::U_BOOT);
    let mut b = VecBackend::new(10);
    ack(req(
        &mut d,
        &mut b,
        t(0),
        DfuRequest::Dnload,
        0,
        b"0123456789abcdef",
    ));
    assert_eq!(d.state(), State::DfuDnloadSync);
    let s = status(&mut d, &mut b, t(0));
    assert_eq!((s.state, s.poll_timeout_ms), (State::DfuDnbusy, 10));
    // Polled early: still busy, with the time left.
    let s = status(&mut d, &mut b, t(4));
    assert_eq!((s.state, s.poll_timeout_ms), (State::DfuDnbusy, 6));
    let s = status(&mut d, &mut b, t(10));
    assert_eq!(s.state, State::DfuDnloadIdle);
    ack(req(&mut d, &mut b, t(11), DfuRequest::Dnload, 1, b"xyz"));
    assert_eq!(status(&mut d, &mut b, t(11)).state, State::DfuDnbusy);
    assert_eq!(status(&mut d, &mut b, t(21)).state, State::DfuDnloadIdle);
    ack(req(&mut d, &mut b, t(22), DfuRequest::Dnload, 2, &[]));
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
    ack(req(&mut d, &mut b, t(0), DfuRequest::Dnload, 0, &[1; 16]));
    assert_eq!(status(&mut d, &mut b, t(0)).state, State::DfuDnloadIdle);
    ack(req(&mut d, &mut b, t(0), DfuRequest::Dnload, 1, &[]));
    assert_eq!(d.state(), State::DfuManifestSync);
    // ABORT here would skip the manifestation: refused.
    stalled_into_error(req(&mut d, &mut b, t(0), DfuRequest::Abort, 0, &[]), &d);
    assert!(b.manifested.is_empty());
    // A second bad request keeps the first status.
    assert_eq!(
        req(&mut d, &mut b, t(0), DfuRequest::Detach, 0, &[]),
        Reply::Stall
    );
    assert_eq!(d.status(), Status::ErrStalledPkt);

    let mut d = dev(Dialect::ST_ROM);
    let mut b = VecBackend::new(0);
    ack(req(&mut d, &mut b, t(0), DfuRequest::Dnload, 0, &[1; 16]));
    status(&mut d, &mut b, t(0));
    req(&mut d, &mut b, t(0), DfuRequest::Dnload, 1, &[]);
    status(&mut d, &mut b, t(0));
    // Manifestation (7 ms) is over: the device waits for a reset and
    // answers nothing.
    assert_eq!(
        req(&mut d, &mut b, t(10), DfuRequest::GetStatus, 0, &[]),
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
    ack(req(&mut d, &mut b, t(0), DfuRequest::Dnload, 0, &[1; 16]));
    let s = status(&mut d, &mut b, t(1));
    // Written inside the request: idle at once, poll timeout 0, and the
    // reply completes when the 3 ms write does.
    assert_eq!((s.state, s.poll_timeout_ms), (State::DfuDnloadIdle, 0));
    assert_eq!(d.reply_at(), t(4));
    assert_eq!(b.alts[0], [1; 16]);
    ack(req(&mut d, &mut b, t(4), DfuRequest::Dnload, 1, &[2; 16]));
    assert_eq!(status(&mut d, &mut b, t(4)).state, State::DfuDnloadIdle);
    assert_eq!(b.alts[0].len(), 32);
}

#[test]
fn instant_work_skips_dnbusy_and_non_tolerant_waits_for_reset() {
    let mut d = dev(Dialect::ST_ROM);
    let mut b = VecBackend::new(0);
    b.manifest_time = Duration::ZERO;
    req(&mut d, &mut b, t(0), DfuRequest::Dnload, 0, b"ab");
    assert_eq!(status(&mut d, &mut b, t(0)).state, State::DfuDnloadIdle);
    req(&mut d, &mut b, t(0), DfuRequest::Dnload, 1, &[]);
    assert_eq!(status(&mut d, &mut b, t(0)).state, State::DfuManifest);
    assert_eq!(
        req(&mut d, &mut b, t(1), DfuRequest::GetState, 0, &[]),
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
        let r = upload(&mut d, &mut b, t(0), &mut buf);
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
    let r = upload(&mut d, &mut b, t(0), &mut big);
    assert_eq!(r, Reply::Stall);
    assert_eq!(d.status(), Status::ErrStalledPkt);
}

#[test]
fn clrstatus_strict_versus_lenient() {
    let mut b = VecBackend::new(0);
    let mut strict = dev(Dialect::TF_A);
    ack(req(
        &mut strict,
        &mut b,
        t(0),
        DfuRequest::ClrStatus,
        0,
        &[],
    ));
    let s = status(&mut strict, &mut b, t(0));
    assert_eq!((s.state, s.status), (State::DfuError, Status::ErrUnknown));
    req(&mut strict, &mut b, t(0), DfuRequest::ClrStatus, 0, &[]);
    assert_eq!(strict.state(), State::DfuIdle);

    let mut lenient = dev(Dialect::U_BOOT);
    req(&mut lenient, &mut b, t(0), DfuRequest::ClrStatus, 0, &[]);
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
    req(&mut d, &mut b, t(0), DfuRequest::Dnload, 0, b"0123456789");
    let s = status(&mut d, &mut b, t(0));
    assert_eq!((s.state, s.status), (State::DfuError, Status::ErrAddress));
    req(&mut d, &mut b, t(0), DfuRequest::ClrStatus, 0, &[]);

    b.fail_manifest = true;
    req(&mut d, &mut b, t(0), DfuRequest::Dnload, 0, b"01");
    status(&mut d, &mut b, t(0));
    req(&mut d, &mut b, t(0), DfuRequest::Dnload, 1, &[]);
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
    req(&mut d, &mut b, t(0), DfuRequest::Dnload, 0, b"ab");
    status(&mut d, &mut b, t(0));
    assert_eq!(
        req(&mut d, &mut b, t(0), DfuRequest::Dnload, 2, b"cd"),
        Reply::Stall
    );
    assert_eq!(
        (d.state(), d.status()),
        (State::DfuError, Status::ErrUnknown)
    );
    assert_eq!(&b.alts[0][..], b"ab");
    // A download must start at block 0.
    req(&mut d, &mut b, t(0), DfuRequest::ClrStatus, 0, &[]);
    assert_eq!(
        req(&mut d, &mut b, t(0), DfuRequest::Dnload, 5, b"ab"),
        Reply::Stall
    );
}

#[test]
fn requests_while_busy_stall() {
    let mut d = dev(Dialect::U_BOOT);
    let mut b = VecBackend::new(50);
    req(&mut d, &mut b, t(0), DfuRequest::Dnload, 0, b"ab");
    assert_eq!(status(&mut d, &mut b, t(0)).state, State::DfuDnbusy);
    assert_eq!(
        req(&mut d, &mut b, t(10), DfuRequest::Dnload, 1, b"cd"),
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
    ack(req(&mut d, &mut b, t(0), DfuRequest::Detach, 500, &[]));
    assert_eq!(
        d.poll_event(),
        Some(DeviceEvent::Detach { timeout_ms: 500 })
    );
    assert_eq!(d.poll_event(), Some(DeviceEvent::UsbReset));
    let mut d = dev(Dialect::TF_A);
    req(&mut d, &mut b, t(0), DfuRequest::Detach, 1, &[]);
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

#[test]
fn abort_in_sync_states_follows_the_dialect() {
    // The same table as the flash core: the dialect decides, not the back end.
    let mut b = VecBackend::new(0);
    let mut d = dev(Dialect::ST_ROM);
    ack(req(&mut d, &mut b, t(0), DfuRequest::Dnload, 0, b"ab"));
    assert_eq!(d.state(), State::DfuDnloadSync);
    ack(req(&mut d, &mut b, t(0), DfuRequest::Abort, 0, &[]));
    assert_eq!(d.state(), State::DfuIdle);
    assert!(b.alts[0].is_empty(), "the dropped block was never written");
    let mut d = dev(Dialect::U_BOOT);
    ack(req(&mut d, &mut b, t(0), DfuRequest::Dnload, 0, b"ab"));
    stalled_into_error(req(&mut d, &mut b, t(0), DfuRequest::Abort, 0, &[]), &d);
}

//! A plain DFU 1.1 device whose alternate settings are byte streams.
//!
//! U-Boot's `f_dfu`, TF-A's `usb_dfu.c` and the STM32MP ROM code do not
//! address memory the way DfuSe does: each alternate setting is a partition
//! (or a RAM buffer, or a virtual file) written from its start, block after
//! block, and read back the same way. [`StreamDevice`] is that protocol
//! engine; what a block *means* is up to a [`StreamBackend`].
//!
//! Like [`super::DfuDevice`] it is sans-IO and runs the same state table:
//! time comes in as an [`Instant`] with each request, and the work a block
//! causes is reported by the backend as a duration.
//! The device then answers dfuDNBUSY, with bwPollTimeout set to the time
//! left, until that duration has passed; meanwhile any request other than
//! GETSTATUS stalls and sets dfuERROR/errSTALLEDPKT (DFU 1.1 state table).
//! Block numbers follow U-Boot's `f_dfu`: a download starts at block 0 and
//! numbers follow each other (wrapping at 65535), any other number is
//! refused with dfuERROR/errUNKNOWN; UPLOAD block numbers are not checked,
//! the stream offset advances by what was returned.

use super::state::{
    Backend, Frame, Machine, Manifestation, Refusal, Sequence, Signal, Uploaded, Work,
};
use super::{DeviceEvent, Dialect, Reply, MAX_TRANSFER_SIZE};
use crate::wire::{FunctionalDescriptor, SetupPacket, State, Status};
use core::time::Duration;
use dfukit_core::Instant;

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

/// The stream position and the timing of the work in progress.
struct StreamWork {
    seq: Sequence,
    /// Stream offset of the block in the buffer.
    block_offset: u64,
    /// End of the work in progress (dfuDNBUSY, dfuMANIFEST).
    busy_until: Instant,
    /// Write each block inside the request that reports on it (see
    /// [`StreamDevice::set_synchronous_writes`]).
    synchronous_writes: bool,
    /// When the reply to the last request can complete.
    reply_at: Instant,
}

/// The back end for one call: the stream work and the [`StreamBackend`].
struct StreamCtx<'a, B: StreamBackend> {
    work: &'a mut StreamWork,
    backend: &'a mut B,
}

impl<B: StreamBackend> Backend for StreamCtx<'_, B> {
    const TIMED: bool = true;

    fn alt_count(&self) -> u8 {
        self.backend.alt_count()
    }
    fn poll(&mut self, _now: Instant, _alt: u8) -> Option<Signal> {
        // A block's work is done inside `write`; only its time remains.
        None
    }
    fn work_pending(&self) -> bool {
        false
    }
    fn done(&self, now: Instant) -> bool {
        now >= self.work.busy_until
    }
    fn remaining(&self, now: Instant, _alt: u8) -> Duration {
        self.work.busy_until.saturating_duration_since(now)
    }
    fn accepts_block(&self) -> bool {
        true
    }
    fn leave_from_idle(&self) -> bool {
        false
    }
    fn dnload(&mut self, at: Frame, data: &[u8]) -> Result<(), Refusal> {
        self.work.block_offset = self.work.seq.block(at.block, data.len(), at.starting)?;
        Ok(())
    }
    fn execute(&mut self, now: Instant, alt: u8, data: &[u8]) -> Result<Work, Status> {
        let d = self.backend.write(alt, self.work.block_offset, data)?;
        if self.work.synchronous_writes {
            self.work.reply_at = now + d;
            Ok(Work::Finished)
        } else if d.is_zero() {
            Ok(Work::Finished)
        } else {
            self.work.busy_until = now + d;
            Ok(Work::Pending)
        }
    }
    fn manifest(&mut self, now: Instant, alt: u8) -> Result<Manifestation, Status> {
        let d = self.backend.manifest(alt, self.work.seq.total())?;
        self.work.busy_until = now + d;
        Ok(Manifestation::Busy(d))
    }
    fn upload(&mut self, at: Frame, buf: &mut [u8]) -> Result<Uploaded, Refusal> {
        let offset = self.work.seq.read_from(at.starting);
        let n = self
            .backend
            .read(at.alt, offset, buf)
            .map_err(Refusal::Error)?
            .min(buf.len());
        self.work.seq.uploaded(n);
        Ok(Uploaded {
            len: n,
            last: n < buf.len(),
        })
    }
}

/// The stream DFU device core. See the module documentation.
pub struct StreamDevice {
    m: Machine,
    work: StreamWork,
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
        let transfer_size = transfer_size.clamp(1, MAX_TRANSFER_SIZE as u16);
        StreamDevice {
            m: Machine::new(dialect, interface, transfer_size, detach_timeout_ms),
            work: StreamWork {
                seq: Sequence::default(),
                block_offset: 0,
                busy_until: Instant::ZERO,
                synchronous_writes: false,
                reply_at: Instant::ZERO,
            },
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
        self.work.synchronous_writes = on;
    }

    /// When the reply to the request just handled completes: later than the
    /// request's arrival while a synchronous write runs (the device NAKs).
    pub fn reply_at(&self) -> Instant {
        self.work.reply_at
    }

    /// The functional descriptor to put in the configuration descriptor.
    pub fn functional_descriptor(&self) -> FunctionalDescriptor {
        self.m.descriptor()
    }

    /// Current DFU state (as of the last request).
    pub fn state(&self) -> State {
        self.m.state()
    }

    /// Current status code.
    pub fn status(&self) -> Status {
        self.m.status()
    }

    /// Selected alternate setting.
    pub fn alt(&self) -> u8 {
        self.m.alt()
    }

    /// The next event for the environment.
    pub fn poll_event(&mut self) -> Option<DeviceEvent> {
        self.m.poll_event()
    }

    /// A USB bus reset: back to dfuIDLE on alt 0 (a reset also resets the
    /// configuration, hence the alternate setting), any transfer dropped.
    pub fn usb_reset(&mut self) {
        self.m.reset();
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
        let mut ctx = StreamCtx {
            work: &mut self.work,
            backend,
        };
        self.m.control(now, setup, data, reply, &mut ctx)
    }
}

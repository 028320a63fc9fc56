//! The host's time limits hold on the transport's clock: a device that
//! stays busy, answers slowly or asks for absurd poll timeouts is given up
//! on after `busy_limit`, not after hours.

use dfukit_core::{Clock, Instant};
use dfukit_usbdfu::host::{
    ControlRequest, ControlTransfer, DataStage, DfuHost, DfuHostError, DfuOptions, TransferError,
};
use dfukit_usbdfu::wire::{FunctionalDescriptor, GetStatus, State, Status};
use std::time::Duration;

/// A device that is idle until a DNLOAD, then reports `after_block` after
/// data blocks and `after_end` after the zero-length one, with `poll_ms`,
/// each control transfer costing `per_transfer` of virtual time.
struct ForeverBusy {
    now: Duration,
    per_transfer: Duration,
    state: State,
    after_block: State,
    after_end: State,
    poll_ms: u32,
}

impl Clock for ForeverBusy {
    fn now(&self) -> Instant {
        Instant::ZERO + self.now
    }
    fn sleep(&mut self, d: Duration) {
        self.now += d;
    }
}

impl ControlTransfer for ForeverBusy {
    fn control(&mut self, req: ControlRequest<'_>) -> Result<usize, TransferError> {
        self.now += self.per_transfer;
        match req.data {
            // GETSTATUS (3).
            DataStage::In(buf) if req.setup.request == 3 => {
                let st = GetStatus {
                    status: Status::Ok,
                    poll_timeout_ms: self.poll_ms,
                    state: self.state,
                    string_index: 0,
                };
                buf[..GetStatus::LEN].copy_from_slice(&st.to_bytes());
                Ok(GetStatus::LEN)
            }
            DataStage::In(_) => Err(TransferError::Stall),
            DataStage::Out(data) => {
                self.state = if data.is_empty() {
                    self.after_end
                } else {
                    self.after_block
                };
                Ok(data.len())
            }
        }
    }
}

fn desc() -> FunctionalDescriptor {
    FunctionalDescriptor {
        attributes: 0x0F,
        detach_timeout_ms: 255,
        transfer_size: 16,
        dfu_version: 0x0110,
    }
}

/// Downloads one block to a device that spends `transfer_ms` on each
/// transfer and answers with the given states and poll timeout.
fn run(
    transfer_ms: u64,
    after_block: State,
    after_end: State,
    poll_ms: u32,
) -> (DfuHostError, Duration) {
    let t = ForeverBusy {
        now: Duration::ZERO,
        per_transfer: Duration::from_millis(transfer_ms),
        state: State::DfuIdle,
        after_block,
        after_end,
        poll_ms,
    };
    let opts = DfuOptions {
        busy_limit: Duration::from_secs(30),
        ..DfuOptions::default()
    };
    let mut host = DfuHost::new(t, 0, desc(), opts);
    let e = host.download(&[0u8; 16], &mut |_| {}).unwrap_err();
    (e, host.transport().now)
}

/// Stuck, and each wait (the idle check, the block, manifestation) ended
/// within busy_limit (30 s) even when the device asked for 4.6 hours.
fn gave_up_in_time(e: &DfuHostError, now: Duration) {
    assert!(matches!(e, DfuHostError::Stuck { .. }), "{e}");
    assert!(now < Duration::from_secs(100), "gave up after {now:?}");
}

#[test]
fn slow_busy_answers_are_bounded_by_the_clock() {
    let (e, now) = run(1900, State::DfuDnbusy, State::DfuDnbusy, 1);
    gave_up_in_time(&e, now);
}

#[test]
fn an_absurd_poll_timeout_is_not_slept_in_full() {
    let (e, now) = run(1, State::DfuDnbusy, State::DfuDnbusy, 0xFF_FFFF);
    gave_up_in_time(&e, now);
}

#[test]
fn endless_manifestation_is_bounded() {
    // A device that takes the block, then manifests forever.
    let (e, now) = run(1, State::DfuDnloadIdle, State::DfuManifest, 0xFF_FFFF);
    assert!(matches!(e, DfuHostError::Stuck { .. }), "{e}");
    assert!(now < Duration::from_secs(100), "{e}: {now:?}");
}

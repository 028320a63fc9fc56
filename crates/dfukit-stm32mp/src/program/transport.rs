//! The connector's transport as the flow uses it: transfers bounded by the
//! hand-off deadline, and the device's last report kept.

use crate::connect::Connector;
use crate::phase::PhaseRecord;
use dfukit_core::{Clock, Instant};
use dfukit_usbdfu::host::{ControlRequest, ControlTransfer, DataStage, TransferError};
use dfukit_usbdfu::wire::{DfuRequest, GetStatus, SetupPacket};
use std::fmt;
use std::time::Duration;

/// The last thing the device said: what a failed run shows as the device's
/// side of the story.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum DeviceReport {
    /// A GETSTATUS reply.
    Status(GetStatus),
    /// A phase record read from the virtual partition 0xF1.
    Phase(PhaseRecord),
}

impl fmt::Display for DeviceReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceReport::Status(st) => write!(
                f,
                "DFU state {}, status {}",
                st.state.name(),
                st.status.name()
            ),
            DeviceReport::Phase(rec) => write!(f, "phase record: {rec}"),
        }
    }
}

/// The connector's transport with the run's bookkeeping: transfers are
/// refused past a deadline (the hand-off budget), and every GETSTATUS reply
/// is remembered as the device's last report.
pub(super) struct GuardedTransport<'c, C: Connector> {
    inner: C::Transport,
    clock: &'c C,
    /// Budget armed before the FSBL download; it starts running at the
    /// zero-length DNLOAD, where the ROM code starts manifesting.
    arm: Option<Duration>,
    /// When the armed budget started.
    handoff_start: Option<Duration>,
    /// From this time on, transfers fail with a timeout without being sent.
    pub(super) deadline: Option<Duration>,
    /// What the device said last, on this transport or (handed over when
    /// it was made) on the devices before it.
    last_report: Option<DeviceReport>,
}

impl<'c, C: Connector> GuardedTransport<'c, C> {
    /// Wraps `inner`, refusing transfers from `deadline` on; `last_report`
    /// is what the device said before this enumeration.
    pub(super) fn new(
        inner: C::Transport,
        clock: &'c C,
        deadline: Option<Duration>,
        last_report: Option<DeviceReport>,
    ) -> Self {
        GuardedTransport {
            inner,
            clock,
            arm: None,
            handoff_start: None,
            deadline,
            last_report,
        }
    }

    /// Arms the hand-off budget: the deadline is set `budget` after the
    /// next zero-length DNLOAD.
    pub(super) fn arm_handoff(&mut self, budget: Duration) {
        self.arm = Some(budget);
    }

    /// When the armed hand-off budget started running, if it has.
    pub(super) fn handoff_start(&self) -> Option<Duration> {
        self.handoff_start
    }

    /// Records a phase record the flow read as the device's last report.
    pub(super) fn record_phase(&mut self, record: PhaseRecord) {
        self.last_report = Some(DeviceReport::Phase(record));
    }

    /// The device's last report, leaving none.
    pub(super) fn take_report(&mut self) -> Option<DeviceReport> {
        self.last_report.take()
    }

    /// The transfer timeout, shortened so no transfer outlasts the
    /// deadline; a timeout once the deadline has passed.
    fn gate(&self, timeout: Duration) -> Result<Duration, TransferError> {
        match self.deadline {
            None => Ok(timeout),
            Some(d) => {
                let now = self.clock.elapsed();
                if now >= d {
                    Err(TransferError::Timeout)
                } else {
                    Ok(timeout.min(d - now))
                }
            }
        }
    }
}

/// A DFU class request (bmRequestType type bits = class).
fn is_class(setup: &SetupPacket, request: DfuRequest) -> bool {
    setup.request_type & 0x60 == 0x20 && setup.request == request as u8
}

impl<C: Connector> Clock for GuardedTransport<'_, C> {
    fn now(&self) -> Instant {
        self.clock.now()
    }

    /// No wait outlasts the deadline.
    fn sleep(&mut self, d: Duration) {
        let d = match self.deadline {
            Some(end) => d.min(end.saturating_sub(self.clock.elapsed())),
            None => d,
        };
        self.inner.sleep(d)
    }
}

impl<C: Connector> ControlTransfer for GuardedTransport<'_, C> {
    fn control(&mut self, req: ControlRequest<'_>) -> Result<usize, TransferError> {
        let ControlRequest {
            setup,
            data,
            timeout,
        } = req;
        match data {
            DataStage::In(buf) => {
                let timeout = self.gate(timeout)?;
                let n = self.inner.control_in(setup, buf, timeout)?;
                if is_class(&setup, DfuRequest::GetStatus) {
                    if let Ok(st) = GetStatus::from_bytes(&buf[..n]) {
                        self.last_report = Some(DeviceReport::Status(st));
                    }
                }
                Ok(n)
            }
            DataStage::Out(data) => {
                if is_class(&setup, DfuRequest::Dnload) && data.is_empty() {
                    if let Some(budget) = self.arm.take() {
                        let now = self.clock.elapsed();
                        self.handoff_start = Some(now);
                        self.deadline = Some(now + budget);
                    }
                }
                let timeout = self.gate(timeout)?;
                self.inner.control_out(setup, data, timeout)
            }
        }
    }
}

//! Reaching the board again after each re-enumeration.
//!
//! Programming an STM32MP crosses three USB devices on one cable: the ROM
//! code (whose enumeration TF-A keeps on MP15), then U-Boot's first
//! enumeration, then U-Boot's re-enumeration with one alternate setting per
//! partition. The host flow asks a [`Connector`] for the device each time;
//! the connector hides whether the board is behind USB/IP, local USB or an
//! in-process simulator running in virtual time.

use dfukit_core::Clock;
use dfukit_usbdfu::host::ControlTransfer;
use std::time::Duration;

/// A way to open the STM32MP's DFU device (0483:df11), again and again.
///
/// Its [`Clock`] is the run's clock: the flow measures every bound with
/// it (the wall clock for a real bus, virtual time for a simulated one).
pub trait Connector: Clock {
    /// The open device.
    type Transport: ControlTransfer;

    /// Waits up to `timeout` for the device to be present and opens it.
    /// A previously returned transport is no longer used once this is called.
    fn connect(&mut self, timeout: Duration) -> Result<Self::Transport, ConnectError>;
}

/// Why the device could not be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectError {
    /// No matching device appeared within the timeout.
    #[error("no STM32MP DFU device (0483:df11) appeared within {waited:?}")]
    NotFound {
        /// How long the connector waited.
        waited: Duration,
    },
    /// The bus or server could not be reached, or the device not opened.
    #[error("{0}")]
    Io(String),
}

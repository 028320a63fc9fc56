//! Sans-IO DFU 1.1 / DfuSe devices: the state machine behind EP0.
//!
//! One DFU 1.1 state table (in `device/state.rs`) serves two back ends:
//!
//! - [`DfuDevice`]: DfuSe (or plain DFU) over flash memory, with erase and
//!   program operations handed to the environment and completed later, in
//!   the dialects of the ST ROM, U-Boot and TF-A;
//! - [`stream::StreamDevice`]: plain DFU whose alternate settings are byte
//!   streams served by a [`stream::StreamBackend`] (U-Boot's `f_dfu`, TF-A
//!   and the STM32MP ROM).
//!
//! Neither touches hardware or reads a clock: time comes in with each input,
//! so the same cores run on a microcontroller, in the simulator under
//! virtual time and in tests.

mod config;
mod flash;
mod state;
pub mod stream;

pub use config::{
    AltConfig, ConfigError, DeviceConfig, DeviceFlashTiming, Dialect, MAX_ALTS, MAX_TRANSFER_SIZE,
};
pub use flash::{DfuDevice, DfuFlashFault};
pub use state::AltError;

/// The answer to a control request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// IN data: the first `n` bytes of the reply buffer.
    In(usize),
    /// OUT request accepted (zero-length status stage).
    Ack,
    /// The request is refused: stall EP0.
    Stall,
}

/// Something the device asks of its environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceEvent {
    /// Leave DFU and start the application at `address` (DfuSe `:leave`;
    /// a device that is not manifestation tolerant also disconnects).
    Leave {
        /// Where to jump.
        address: u32,
    },
    /// DETACH arrived.
    Detach {
        /// wValue: how long the host will wait for the device to go, ms.
        timeout_ms: u16,
    },
    /// Disconnect and re-enumerate (bitWillDetach after DETACH, or after
    /// Read Unprotect erased the flash).
    UsbReset,
    /// A download was manifested and the device stays in DFU mode.
    Manifested,
}

#[cfg(test)]
mod tests;

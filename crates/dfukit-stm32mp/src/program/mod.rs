//! Programming an STM32MP over USB DFU, as STM32CubeProgrammer's "TSV
//! flashing service" does, with progress reported as [`ProgramEvent`]s and every
//! failure turned into a [`ProgramError`] that names the stage, the
//! partition, what the device last said, and the likely causes.
//!
//! # The flow
//!
//! One cable, three USB devices in turn (see the [`connect`](crate::connect)
//! module):
//!
//! 1. **ROM code** ([`ProgramStage::Rom`]): the host downloads the FSBL
//!    (the layout row with Id 0x01, TF-A's USB programmer build) to the alt
//!    with Id 0x01. On manifestation the ROM code runs it; on STM32MP15
//!    TF-A keeps the ROM's enumeration.
//! 2. **TF-A** ([`ProgramStage::TfA`]): the host waits for TF-A to answer,
//!    reads the phase record of 0xF1 (phase 0x03), downloads the FIP
//!    (Id 0x03), reads 0xF1 again (DETACH requested) and sends DETACH. TF-A
//!    boots U-Boot.
//! 3. **U-Boot, first enumeration** ([`ProgramStage::UBootLayout`]): the
//!    host sends the flashlayout to alt `@FlashLayout/0x00` and DETACHes;
//!    U-Boot creates the partitions and re-enumerates.
//! 4. **U-Boot, programming** ([`ProgramStage::UBootProgram`]): read 0xF1,
//!    download the row it names, until phase END (0xFE); then DETACH.
//!
//! [`program`] starts wherever the board is: the first phase record and the
//! alternate-setting names tell which of the four it is talking to
//! ([`identify`]), so a run can resume after the ROM code or TF-A stage.
//!
//! # Bounds
//!
//! Every bound is measured with
//! [`Connector::elapsed`](crate::connect::Connector::elapsed), never with
//! the system clock, so the flow runs unchanged against a board simulated
//! in virtual time. The ROM → TF-A hand-off is bounded as a whole by
//! [`Options::tfa_timeout`], counted from the zero-length DNLOAD that makes
//! the ROM code start the FSBL: a board whose TF-A stops answering USB (the
//! field report in the reference, §5.5) fails with
//! [`FailureKind::TfaSilent`] after seconds, where STM32CubeProgrammer loops
//! on CLRSTATUS for three quarters of an hour. The host never sends
//! CLRSTATUS to a device that is not in dfuERROR: ST's stack and TF-A turn
//! that into dfuERROR/errUNKNOWN themselves.
//!
//! # Where things are
//!
//! `options.rs` holds the bounds, `stage.rs` the stages and how a device is
//! identified, `events.rs` the progress events, `summary.rs` what a run
//! wrote, `error.rs` the failures with their codes, causes and help,
//! `transport.rs` the transport wrapper that enforces the hand-off deadline
//! and keeps the device's last report, `flow.rs` the run and its reconnect
//! loop, and `steps.rs` the work of each stage.

mod error;
mod events;
mod flow;
mod options;
mod stage;
mod steps;
mod summary;
mod transport;

pub use error::{device_message_causes, FailureKind, ProgramError};
pub use events::ProgramEvent;
pub use flow::program;
pub use options::ProgramOptions;
pub use stage::{identify, ProgramStage};
pub use summary::{Summary, Written};

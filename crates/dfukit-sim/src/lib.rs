//! Simulated boards for dfukit: the pieces a board is built from.
//!
//! - [`clock`]: virtual time ([`Scheduler`]) and a seeded random source
//!   ([`SimRng`]), so that every run is reproducible from its seed;
//! - [`flash`]: NOR flash chip models ([`FlashChip`]) that enforce the
//!   physics (erase before write, 1→0 programs, alignment, program pages),
//!   model datasheet timing ([`FlashTiming`]) and can be interrupted
//!   part-way through an operation;
//! - [`power`]: power cuts counted in flash operations across a board
//!   ([`PowerSupply`], [`PowerCutPlan`]), MCUboot's exhaustive method;
//! - [`storage`]: a chip's bytes in memory or in a write-through file;
//! - [`state`]: a board's state directory (images, `board.json`, event log);
//! - [`boards`]: the simulated boards ([`boards::nrf52840`],
//!   [`boards::stm32f4`], [`boards::stm32mp1`]), each a [`Board`]; [`board`]
//!   drives any of them by its own clock;
//! - [`links`]: how hosts reach them — a pseudo-terminal ([`links::pty`]),
//!   an in-process serial link ([`links::serial`]) with UART line time
//!   ([`links::uart`]), a BLE link model ([`links::ble`]: air time per LL
//!   packet and packets per connection event, from the Bluetooth Core
//!   specification) and a BLE connection in virtual time
//!   ([`links::ble_link`]) that drops Packet writes the board has no
//!   receive buffer for, as the nRF5 SDK does, and a USB cable in virtual
//!   time ([`links::usb`]) with control-transfer bus time from the USB 2.0
//!   limits;
//! - [`session`]: whole updates against a simulated board in virtual time.
//!
//! The simulator is host-only (std). Only [`storage`] and [`state`] touch
//! the file system; nothing here reads the host clock except
//! [`LogTime::wall_now`], for boards served in real time.
#![warn(missing_docs)]

pub mod board;
pub mod clock;
pub mod flash;
pub mod power;
pub mod state;
pub mod storage;

pub use clock::{EventId, Scheduler, SimRng};
pub use dfukit_core::Board;
pub use flash::{
    stm32f4_sectors, CutPoint, EraseSector, FlashChip, FlashCounters, FlashGeometry,
    FlashModelError, FlashTiming, OpKind, TimingCorner,
};
pub use power::{OpOutcome, PowerCutPlan, PowerGate, PowerSupply};
pub use state::{EventLog, LogTime, StateDir, StateError};
pub use storage::{Storage, StorageError, ERASED};

pub mod boards;
pub mod links;
pub mod session;
pub mod synthetic;

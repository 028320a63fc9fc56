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
//! - [`usb_link`]: a USB cable in virtual time ([`usb_link::SimUsb`]), with
//!   control-transfer bus time from the USB 2.0 limits;
//! - [`uart`]: UART line time for SLIP frames ([`uart::UartModel`]), which
//!   [`link::BoardLink::with_uart`] applies to the serial link;
//! - [`ble`]: a BLE link model ([`ble::BleParams`]): air time per LL packet,
//!   packets per connection event and the throughput bound they give, from
//!   the Bluetooth Core specification;
//! - [`ble_link`]: a BLE connection to the simulated nRF52840 in virtual
//!   time ([`ble_link::BleBoardLink`]), dropping Packet writes the board has
//!   no receive buffer for, as the nRF5 SDK does;
//! - [`stm32f4`], [`stm32mp1`], [`nrf52840`]: the simulated boards.
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

pub mod ble;
pub mod ble_link;
pub mod link;
pub mod nrf52840;
pub mod pty;
pub mod session;
pub mod stm32f4;
pub mod stm32mp1;
pub mod synthetic;
pub mod uart;
pub mod usb_link;

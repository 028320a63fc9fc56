//! USB DFU 1.1 and ST DfuSe for dfukit.
//!
//! - [`wire`]: requests, states, status codes, GETSTATUS, the functional
//!   descriptor and setup packets (no_std).
//! - [`dfuse`]: DfuSe commands, block → address mapping and memory-layout
//!   strings (no_std).
//! - [`device`]: sans-IO DFU/DfuSe devices: one state table with dialects
//!   for the ST ROM, U-Boot and TF-A, over flash memory ([`DfuDevice`]) or
//!   byte streams ([`device::stream::StreamDevice`]) (no_std).
//! - [`host`] (std): a dfu-util-equivalent host driver over a
//!   [`host::ControlTransfer`], with the whole DfuSe download policy in
//!   [`host::DfuHost::dfuse_download_job`].
//! - [`files`] (std): DFU suffix and DfuSe `.dfu` files; [`pack`] (std) builds a `.dfu`
//!   from address-tagged pieces, checked for overlaps.
#![cfg_attr(not(feature = "std"), no_std)]
#![warn(missing_docs)]

pub mod device;
pub mod dfuse;
#[cfg(feature = "std")]
pub mod files;
#[cfg(feature = "std")]
pub mod host;
#[cfg(feature = "std")]
pub mod pack;
pub mod wire;

pub use device::{DeviceConfig, DeviceEvent, DfuDevice, Dialect, Reply};
pub use dfuse::{Command, MemoryLayout};
pub use wire::{DfuRequest, FunctionalDescriptor, GetStatus, SetupPacket, State, Status};

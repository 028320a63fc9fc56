//! Nordic nRF5 SDK Secure DFU.
#![cfg_attr(not(feature = "std"), no_std)]
#![warn(missing_docs)]
pub mod bootloader;
#[cfg(feature = "std")]
pub mod host;
pub mod init_packet;
#[cfg(feature = "std")]
pub mod package;
pub mod proto;
pub mod settings;
pub mod slip;

//! STM32MP1 programming as STM32CubeProgrammer and U-Boot's stm32prog do it.
//!
//! no_std (device side):
//!
//! - [`phase`]: partition Ids, the phase record of 0xF1, alt names;
//! - [`stm32prog`]: a sans-IO device core of the ROM code, TF-A and U-Boot's
//!   `stm32prog`, with U-Boot's own flashlayout parser.
//!
//! std (host side, feature `std`): the TSV flashlayout checker
//! ([`layout`]), STM32 image headers ([`image`]), SD-card images
//! ([`sdcard`]) and the programming flow ([`program`], [`connect`]).
#![cfg_attr(not(feature = "std"), no_std)]
#![warn(missing_docs)]

#[cfg(feature = "std")]
pub mod connect;
#[cfg(feature = "std")]
pub mod image;
#[cfg(feature = "std")]
pub mod layout;
pub mod phase;
#[cfg(feature = "std")]
pub mod program;
#[cfg(feature = "std")]
pub mod sdcard;
pub mod stm32prog;

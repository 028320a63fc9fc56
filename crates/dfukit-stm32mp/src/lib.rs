//! STM32MP1 programming as STM32CubeProgrammer and U-Boot's stm32prog do it:
//! the TSV flashlayout, STM32 image headers, and SD-card images.
#![warn(missing_docs)]

pub mod connect;
pub mod image;
pub mod layout;
pub mod phase;
pub mod program;
pub mod sdcard;

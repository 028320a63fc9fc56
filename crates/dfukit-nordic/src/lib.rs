//! Nordic nRF5 SDK Secure DFU.
#![cfg_attr(not(feature = "std"), no_std)]
#![warn(missing_docs)]

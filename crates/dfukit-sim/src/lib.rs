//! Simulated boards.
#![warn(missing_docs)]

//! Progress of a run, as it happens.

use super::stage::ProgramStage;
use crate::phase::PhaseRecord;
use std::time::Duration;

/// Progress of a run, reported as it happens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProgramEvent {
    /// A stage begins (for a stage reached by re-enumeration, before the
    /// device is back).
    StageStarted {
        /// The stage.
        stage: ProgramStage,
    },
    /// The device was opened and identified.
    Connected {
        /// The stage it is in.
        stage: ProgramStage,
        /// How many alternate settings it offers.
        alts: usize,
    },
    /// The phase record of the virtual partition 0xF1 was read.
    PhaseRead {
        /// The stage.
        stage: ProgramStage,
        /// What the device reported.
        record: PhaseRecord,
    },
    /// A binary starts downloading (FSBL, FIP, or a partition).
    PartitionStarted {
        /// Layout Id.
        id: u8,
        /// Layout name.
        name: String,
        /// Size of the binary in bytes.
        total: u64,
    },
    /// Bytes of the current binary acknowledged by the device.
    Progress {
        /// Layout Id.
        id: u8,
        /// Bytes done, counted from the start of the binary (a resumed
        /// download starts above zero).
        done: u64,
        /// Size of the binary in bytes.
        total: u64,
    },
    /// A binary was downloaded and manifested.
    PartitionDone {
        /// Layout Id.
        id: u8,
        /// Bytes sent.
        bytes: u64,
        /// Time from the first request to the end of manifestation.
        elapsed: Duration,
    },
    /// Waiting for the device to enumerate again (after DETACH, or TF-A
    /// re-enumerating on STM32MP13).
    Reconnecting {
        /// The stage expected next.
        stage: ProgramStage,
    },
}

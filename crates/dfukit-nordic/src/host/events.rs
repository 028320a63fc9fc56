//! Progress events of an update.

/// Progress of an update, reported as it happens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpdateEvent {
    /// The device answered; writes carry up to `chunk` bytes.
    Connected {
        /// Device MTU.
        mtu: u16,
        /// Write payload size used.
        chunk: usize,
    },
    /// The init packet is on the device (`resumed`: it already was).
    InitPacketSent {
        /// The device already held it.
        resumed: bool,
    },
    /// The device already holds `offset` bytes of the image; sending resumes there.
    Resumed {
        /// Bytes kept.
        offset: u32,
    },
    /// `done` of `total` image bytes are confirmed on the device.
    Progress {
        /// Confirmed bytes.
        done: u32,
        /// Image size.
        total: u32,
    },
    /// The device reported fewer bytes than were sent, and what it holds
    /// matches the image: sending resumes at its offset in the same object.
    Recovered {
        /// Object index (`None` for the init packet).
        object: Option<u32>,
        /// Image offset (init packet offset) the device holds.
        offset: u32,
        /// Bytes sent beyond it that the device dropped.
        lost: u32,
    },
    /// An object is sent again after a mismatch.
    Retry {
        /// Object index.
        object: u32,
        /// What went wrong.
        reason: String,
    },
    /// The exchange starts again after an error a link fault explains
    /// (see `UpdateOptions::session_retries`).
    Reconnect {
        /// Which retry this is, from 1.
        attempt: u32,
        /// The error that ended the previous attempt.
        reason: String,
    },
    /// The device executed the last object and accepted the image.
    Done,
}

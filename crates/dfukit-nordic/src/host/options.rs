//! Host options: PRN window, timeouts, retries, pipelining, and the phone-baseline profile.

use std::time::Duration;

/// Host options.
#[derive(Debug, Clone)]
pub struct UpdateOptions {
    /// Packet receipt notification interval (0 = CRC only at object ends).
    pub prn: u16,
    /// How many WRITEs may be unacknowledged by a receipt notification
    /// before the host stops sending and waits. 0 (the default) means twice
    /// `prn`, so the device always has the next PRN batch queued while its
    /// notification for the previous one travels back. Values below `prn`
    /// are raised to `prn`: a smaller window would wait for a notification
    /// the device never sends. Ignored when `prn` is 0.
    pub window: u16,
    /// How long to wait for each response.
    pub response_timeout: Duration,
    /// How long to wait for the first PING answer.
    pub connect_timeout: Duration,
    /// How many times one object is re-created after a CRC mismatch.
    pub object_retries: u32,
    /// How many times the whole exchange is started again, on the same
    /// link, after an error a link fault explains (no answer in time, an
    /// answer that does not fit the request, an object that did not
    /// match): the host reconnects (PING on serial), keeps the init packet
    /// the device holds and resumes at the device's offset. Errors that a
    /// retry cannot change (a refused package, a port that is gone) end
    /// the update at once.
    pub session_retries: u32,
    /// How long the host waits with a full window before asking the device
    /// for its offset (CRC_GET). Only spent when writes were dropped, which
    /// leaves the device short of its next notification.
    pub stall_timeout: Duration,
    /// How many times per object the host resends after the device reports
    /// fewer bytes than were sent (dropped writes) before giving up with
    /// [`HostError::BytesLost`](super::HostError::BytesLost).
    pub max_recoveries: u32,
    /// Pipeline data objects: send CREATE without waiting for its answer
    /// (writes right behind it), and, on links that check every packet
    /// themselves (BLE; not serial, where only the object CRC catches a
    /// flipped byte), EXECUTE right behind the last write instead of a
    /// CRC_GET first. The device takes requests in order, so
    /// its answers still come in order and each is checked: a refused
    /// CREATE stops the update before anything is executed, and an EXECUTE
    /// the device refuses because writes were dropped (it executes only a
    /// complete object) falls back to asking for its offset and resending.
    /// Receipt notifications still check the CRC of every byte. On by
    /// default; [`Options::phone_baseline`] turns it off.
    pub pipeline: bool,
    /// Fixed wait after each data object CREATE, spent through
    /// [`SecureDfuLink::sleep`](super::SecureDfuLink::sleep). Zero by default: the host has no fixed delays; only
    /// [`Options::phone_baseline`] sets it, to emulate a phone library.
    pub create_delay: Duration,
}

impl Default for UpdateOptions {
    fn default() -> Self {
        UpdateOptions {
            prn: 0,
            window: 0,
            response_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(2),
            object_retries: 3,
            session_retries: 2,
            stall_timeout: Duration::from_secs(1),
            max_recoveries: 8,
            pipeline: true,
            create_delay: Duration::ZERO,
        }
    }
}

impl UpdateOptions {
    /// An **emulation** of the baseline phone library of the user report
    /// (Nordic's Android DFU library with its defaults of that time), for
    /// benchmarks only; never use it for real updates. PRN 12 with
    /// stop-and-wait (window = PRN: the host waits for every notification
    /// before sending on), `wait(400)` after each data object CREATE, as
    /// in the report's log, and every request answered before the next.
    pub fn phone_baseline() -> Self {
        UpdateOptions {
            prn: 12,
            window: 12,
            pipeline: false,
            create_delay: Duration::from_millis(400),
            ..UpdateOptions::default()
        }
    }

    /// The window in effect: see [`Options::window`].
    pub(super) fn effective_window(&self) -> u32 {
        let prn = u32::from(self.prn);
        match self.window {
            0 => 2 * prn,
            w => u32::from(w).max(prn),
        }
    }
}

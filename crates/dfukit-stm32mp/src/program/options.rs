//! The bounds of a programming run.

use dfukit_usbdfu::host::DfuOptions as HostOptions;
use std::time::Duration;

/// Bounds of a programming run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgramOptions {
    /// How long to wait for the board to be present when the run starts.
    /// Default 5 s: the board is normally plugged in and reset into USB
    /// boot before the run.
    pub connect_timeout: Duration,
    /// Timeout of each control transfer, in every stage. Default 2 s: every
    /// request the ROM code, TF-A and U-Boot answer is answered within
    /// milliseconds (long flash operations are announced with bwPollTimeout
    /// and waited for between requests), so a transfer that takes longer
    /// means the device has stopped answering.
    pub transfer_timeout: Duration,
    /// Longest time from the end of the FSBL download (the zero-length
    /// DNLOAD) until TF-A answers a read of the phase record. Default 10 s:
    /// TF-A's BL2 initialises clocks, PMIC and DDR in well under a second on
    /// ST's boards.
    pub tfa_timeout: Duration,
    /// How long to wait for U-Boot to enumerate after a DETACH (after the
    /// FIP, and after the flashlayout when U-Boot creates the partitions).
    /// Default 15 s: U-Boot boots, probes its storage and writes the GPTs in
    /// a few seconds; erasing a large `D` (delete) partition takes longer on
    /// some boards, so raise it for those.
    pub reenumerate_timeout: Duration,
}

impl Default for ProgramOptions {
    fn default() -> Self {
        ProgramOptions {
            connect_timeout: Duration::from_secs(5),
            transfer_timeout: Duration::from_secs(2),
            tfa_timeout: Duration::from_secs(10),
            reenumerate_timeout: Duration::from_secs(15),
        }
    }
}

impl ProgramOptions {
    /// The DFU host options used for every stage: [`Options::transfer_timeout`]
    /// per control transfer, the host's defaults otherwise.
    pub fn host_options(&self) -> HostOptions {
        HostOptions {
            timeout: self.transfer_timeout,
            ..HostOptions::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_defaults_feed_the_host() {
        let o = ProgramOptions::default();
        assert_eq!(o.transfer_timeout, Duration::from_secs(2));
        assert_eq!(o.tfa_timeout, Duration::from_secs(10));
        assert_eq!(o.reenumerate_timeout, Duration::from_secs(15));
        assert_eq!(o.connect_timeout, Duration::from_secs(5));
        assert_eq!(o.host_options().timeout, Duration::from_secs(2));
    }
}

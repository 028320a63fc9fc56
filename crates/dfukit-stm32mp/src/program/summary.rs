//! What a successful run wrote.

use super::stage::ProgramStage;
use crate::layout::{Ip, Offset};
use std::time::Duration;

/// One binary written to the board.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// Layout Id.
    pub id: u8,
    /// Layout name.
    pub name: String,
    /// Device (`none` for the FSBL and FIP, which go to RAM).
    pub ip: Ip,
    /// Offset in the device.
    pub offset: Offset,
    /// Bytes sent (the whole binary, unless the device asked to resume at
    /// an offset).
    pub bytes: u64,
    /// Time from the first request to the end of manifestation.
    pub elapsed: Duration,
}

impl Written {
    /// Throughput in bytes per second; `None` when no time passed (an
    /// empty binary, or an instantaneous simulated link).
    pub fn bytes_per_second(&self) -> Option<f64> {
        let s = self.elapsed.as_secs_f64();
        (s > 0.0).then(|| self.bytes as f64 / s)
    }
}

/// What a successful run did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Summary {
    /// Binaries written, in order (FSBL and FIP included).
    pub written: Vec<Written>,
    /// Stages run and the time each took, in order (waits for
    /// re-enumeration count to the stage waited for).
    pub stages: Vec<(ProgramStage, Duration)>,
    /// Time of the whole run.
    pub total: Duration,
}

impl Summary {
    /// Bytes written in total.
    pub fn bytes(&self) -> u64 {
        self.written.iter().map(|w| w.bytes).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::IpKind;

    #[test]
    fn written_rates() {
        let w = Written {
            id: 0x12,
            name: "rootfs".into(),
            ip: Ip {
                kind: IpKind::Mmc,
                instance: 1,
            },
            offset: Offset::Bytes(0x0580_0000),
            bytes: 8 << 20,
            elapsed: Duration::from_secs(2),
        };
        assert_eq!(w.bytes_per_second(), Some(4.0 * 1024.0 * 1024.0));
        let s = Summary {
            written: vec![w.clone(), w],
            stages: vec![],
            total: Duration::from_secs(4),
        };
        assert_eq!(s.bytes(), 16 << 20);
    }
}

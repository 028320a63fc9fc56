//! A Bluetooth Low Energy link model: air time, connection events and the
//! throughput bound they imply for a Secure DFU transfer. Pure arithmetic on
//! [`BleParams`]; [`crate::links::ble_link`] runs it against a board.
//!
//! Sources, Bluetooth Core Specification v5.3:
//! - Vol 6 Part B §2.1 (packet format): preamble 1 octet on LE 1M, 2 octets
//!   on LE 2M; access address 4; PDU header 2; payload 0..=251; MIC 4 only
//!   when encrypted (a DFU bootloader link is not, so no MIC); CRC 3.
//! - Vol 6 Part A §3.1/§3.2 (symbol rates): LE 1M sends 1 Msym/s, LE 2M
//!   2 Msym/s, one bit per symbol: 8 µs or 4 µs per octet.
//! - Vol 6 Part B §4.1.1: the inter frame space T_IFS is 150 µs.
//! - Vol 6 Part B §4.5.1: connection interval 7.5 ms to 4 s in 1.25 ms steps;
//!   §4.5.2: supervision timeout 100 ms to 32 s; §4.5.6: a connection event
//!   goes on while either side sets MD (more data), the central sending
//!   first and the peripheral answering T_IFS later.
//! - Vol 6 Part B §4.5.10: connMaxTxOctets 27..=251 (27 until the Data Length
//!   Update procedure raises it).
//! - Vol 3 Part A §3.1: L2CAP basic header 4 octets. Vol 3 Part F §3.2.8:
//!   ATT_MTU default 23; §3.4.5.1/3 ATT_WRITE_REQ/ATT_WRITE_CMD = opcode 1 +
//!   handle 2 + value; §3.4.5.2 ATT_WRITE_RSP = opcode 1; §3.4.7.1
//!   ATT_HANDLE_VALUE_NTF = opcode 1 + handle 2 + value.

use dfukit_nordic::bootloader::DATA_OBJECT_MAX_SIZE;
use std::fmt::Write as _;
use std::time::Duration;

/// Inter frame space between two packets of an exchange (Core Vol 6 Part B §4.1.1).
pub const T_IFS: Duration = Duration::from_micros(150);
/// Octets of every LL packet besides preamble and payload: access address 4,
/// PDU header 2, CRC 3 (Core Vol 6 Part B §2.1; no MIC, the link is not encrypted).
pub const LL_OVERHEAD_OCTETS: u32 = 4 + 2 + 3;
/// L2CAP basic header: length 2 + channel id 2 (Core Vol 3 Part A §3.1).
pub const L2CAP_HEADER: usize = 4;
/// ATT write (request or command) and notification header: opcode 1 +
/// attribute handle 2 (Core Vol 3 Part F §3.4.5.1, §3.4.5.3, §3.4.7.1).
pub const ATT_HEADER: usize = 3;
/// ATT_WRITE_RSP: the opcode alone (Core Vol 3 Part F §3.4.5.2).
pub const ATT_WRITE_RSP: usize = 1;
/// Smallest and largest LL data payload (Core Vol 6 Part B §4.5.10).
pub const DATA_LENGTH_RANGE: std::ops::RangeInclusive<u16> = 27..=251;
/// Value bytes of a data object's CREATE (opcode, type, size u32) and
/// EXECUTE (opcode) Control Point writes.
const CREATE_VALUE: usize = 6;
const EXECUTE_VALUE: usize = 1;

/// The LE physical layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Phy {
    /// LE 1M: 1 Msym/s, 1-octet preamble.
    M1,
    /// LE 2M: 2 Msym/s, 2-octet preamble.
    M2,
}

impl Phy {
    /// Preamble length in octets (Core Vol 6 Part B §2.1.1).
    pub fn preamble_octets(self) -> u32 {
        match self {
            Phy::M1 => 1,
            Phy::M2 => 2,
        }
    }

    /// Microseconds per octet on the air (Core Vol 6 Part A §3.1, §3.2).
    pub fn micros_per_octet(self) -> u64 {
        match self {
            Phy::M1 => 8,
            Phy::M2 => 4,
        }
    }

    /// Air time of one LL data packet carrying `payload` octets.
    pub fn packet_time(self, payload: u16) -> Duration {
        let octets = self.preamble_octets() + LL_OVERHEAD_OCTETS + u32::from(payload);
        Duration::from_micros(u64::from(octets) * self.micros_per_octet())
    }
}

/// Why a [`BleParams`] cannot describe a connection.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InvalidParams {
    /// Outside Core Vol 6 Part B §4.5.1 (7.5 ms to 4 s).
    #[error("connection interval {0:?} is outside 7.5 ms..=4 s")]
    ConnInterval(Duration),
    /// An event length of zero leaves no room for any packet.
    #[error("connection event length must be positive")]
    EventLength,
    /// ATT_MTU below the default 23 (Core Vol 3 Part F §3.2.8).
    #[error("ATT MTU {0} is below the minimum 23")]
    AttMtu(u16),
    /// Outside Core Vol 6 Part B §4.5.10 (27..=251).
    #[error("LL data length {0} is outside 27..=251")]
    DataLength(u16),
    /// A limit of zero packets per event would stall the link.
    #[error("max packets per event must be at least 1")]
    MaxPackets,
    /// Outside Core Vol 6 Part B §4.5.2 (100 ms to 32 s).
    #[error("supervision timeout {0:?} is outside 100 ms..=32 s")]
    SupervisionTimeout(Duration),
    /// The host needs room for at least one packet.
    #[error("host TX queue must hold at least one packet")]
    HostQueue,
    /// Not a probability.
    #[error("packet error rate {0} is not in 0..1")]
    PacketErrorRate(f64),
}

/// Parameters of one BLE connection between a central (the host, e.g. a
/// phone) and the DFU bootloader.
#[derive(Debug, Clone, PartialEq)]
pub struct BleParams {
    /// PHY both directions use.
    pub phy: Phy,
    /// Connection interval: time between two event anchors (Core Vol 6 Part B §4.5.1).
    pub conn_interval: Duration,
    /// Radio time reserved per connection event (the SoftDevice's
    /// `NRF_SDH_BLE_GAP_EVENT_LENGTH` × 1.25 ms); an exchange that would
    /// end after it waits for the next event.
    pub event_length: Duration,
    /// Negotiated ATT_MTU (Core Vol 3 Part F §3.2.8); a Packet write carries
    /// `att_mtu - 3` bytes.
    pub att_mtu: u16,
    /// LL payload octets per packet, 27..=251 (Core Vol 6 Part B §4.5.10).
    pub data_length: u16,
    /// A central stack's own cap on packets per connection event (some
    /// phones); `None`: only the event length limits.
    pub max_packets_per_event: Option<u32>,
    /// Silence after which the central declares the link lost (Core Vol 6
    /// Part B §4.5.2).
    pub supervision_timeout: Duration,
    /// ATT PDUs the central's host may have queued for its controller before
    /// a further write has to wait for one to go out.
    pub host_tx_queue: usize,
    /// Probability that one LL data packet is received with a CRC error and
    /// retransmitted in the next exchange (Core Vol 6 Part B §4.5.9
    /// acknowledgement scheme). Random draws come from the link's seed.
    pub packet_error_rate: f64,
}

impl BleParams {
    /// The fast setting: LE 2M, ATT_MTU 247 (the SDK's
    /// `NRF_SDH_BLE_GATT_MAX_MTU_SIZE`), data length 251, the SDK
    /// bootloader's default connection interval 15 ms (12 × 1.25 ms) and
    /// supervision timeout 6 s, event length 7.5 ms
    /// (`NRF_SDH_BLE_GAP_EVENT_LENGTH 6`), per reference §4 "BLE transport".
    /// The host TX queue of 6 PDUs is a modelling choice for the central's
    /// stack, not a published figure; no phone cap on packets per event.
    pub fn fast_15ms() -> Self {
        BleParams {
            phy: Phy::M2,
            conn_interval: Duration::from_micros(15_000),
            event_length: Duration::from_micros(7_500),
            att_mtu: 247,
            data_length: 251,
            max_packets_per_event: None,
            supervision_timeout: Duration::from_secs(6),
            host_tx_queue: 6,
            packet_error_rate: 0.0,
        }
    }

    /// As [`fast_15ms`](Self::fast_15ms) with the 7.5 ms connection interval
    /// the phone in the nRF52 user report requests first.
    pub fn fast_7_5ms() -> Self {
        BleParams {
            conn_interval: Duration::from_micros(7_500),
            ..Self::fast_15ms()
        }
    }

    /// The phone of the nRF52 user report (Android, nRF Connect with the
    /// Android DFU Library) on its connection to the bootloader:
    /// - LE 2M: "\[DFU\] PHY updated (TX: LE 2M, RX: LE 2M)" during the
    ///   transfer.
    /// - Connection interval 15 ms, supervision timeout 6 s: what the SDK
    ///   bootloader asks for, and what the report's second log shows
    ///   ("interval: 15.0ms, latency: 0, timeout: 6000ms").
    /// - ATT MTU 247 ("MTU changed to: 247"), data length 251.
    /// - **One packet per connection event: calibrated, not published.** In
    ///   the log, object 1's 17 writes start at 13:15:33.815 ("Uploading
    ///   firmware") and its CRC answer arrives at 34.097. That is about 19
    ///   intervals of 15 ms for 17 writes and the CRC_GET, so one write per
    ///   event.
    ///
    /// Event length and the TX queue as in [`fast_15ms`](Self::fast_15ms).
    pub fn phone_report() -> Self {
        BleParams {
            max_packets_per_event: Some(1),
            ..Self::fast_15ms()
        }
    }

    /// Checks every parameter against the range the Core spec allows.
    pub fn validate(&self) -> Result<(), InvalidParams> {
        if !(Duration::from_micros(7_500)..=Duration::from_secs(4)).contains(&self.conn_interval) {
            return Err(InvalidParams::ConnInterval(self.conn_interval));
        }
        if self.event_length.is_zero() {
            return Err(InvalidParams::EventLength);
        }
        if self.att_mtu < 23 {
            return Err(InvalidParams::AttMtu(self.att_mtu));
        }
        if !DATA_LENGTH_RANGE.contains(&self.data_length) {
            return Err(InvalidParams::DataLength(self.data_length));
        }
        if self.max_packets_per_event == Some(0) {
            return Err(InvalidParams::MaxPackets);
        }
        if !(Duration::from_millis(100)..=Duration::from_secs(32))
            .contains(&self.supervision_timeout)
        {
            return Err(InvalidParams::SupervisionTimeout(self.supervision_timeout));
        }
        if self.host_tx_queue == 0 {
            return Err(InvalidParams::HostQueue);
        }
        if !(0.0..1.0).contains(&self.packet_error_rate) {
            return Err(InvalidParams::PacketErrorRate(self.packet_error_rate));
        }
        Ok(())
    }

    /// Largest value one ATT write or notification carries: ATT_MTU − 3.
    pub fn write_payload(&self) -> usize {
        usize::from(self.att_mtu) - ATT_HEADER
    }

    /// LL payload sizes an L2CAP SDU of `att_pdu` ATT octets is sent in:
    /// the 4-octet L2CAP header plus the PDU, cut into `data_length` pieces.
    pub fn fragments(&self, att_pdu: usize) -> Vec<u16> {
        let mut left = L2CAP_HEADER + att_pdu;
        let dl = usize::from(self.data_length);
        let mut v = Vec::with_capacity(left.div_ceil(dl));
        while left > 0 {
            let n = left.min(dl);
            v.push(n as u16);
            left -= n;
        }
        v
    }

    /// One exchange: the central's packet of `central` octets, T_IFS, the
    /// peripheral's answer of `peripheral` octets (0: an empty ACK), T_IFS.
    pub fn exchange_time(&self, central: u16, peripheral: u16) -> Duration {
        self.phy.packet_time(central) + T_IFS + self.phy.packet_time(peripheral) + T_IFS
    }

    /// Radio time one event may use: the event length, never more than the
    /// interval (the next anchor ends the event).
    pub fn event_budget(&self) -> Duration {
        self.event_length.min(self.conn_interval)
    }

    /// Exchanges of `central`-octet packets answered by empty ACKs that fit
    /// in one event: `floor(budget / exchange)`, at least 1 (the first
    /// exchange of an event always happens), capped by
    /// [`max_packets_per_event`](Self::max_packets_per_event).
    pub fn packets_per_event(&self, central: u16) -> u32 {
        let x = self.exchange_time(central, 0).as_micros();
        let k = (self.event_budget().as_micros() / x).max(1) as u32;
        self.max_packets_per_event.map_or(k, |cap| k.min(cap))
    }

    /// Time on air one Packet write of `value` bytes costs: one exchange per
    /// LL fragment of its ATT_WRITE_CMD, each answered by an empty ACK.
    pub fn write_time(&self, value: usize) -> Duration {
        self.fragments(ATT_HEADER + value)
            .into_iter()
            .map(|f| self.exchange_time(f, 0))
            .sum()
    }

    /// Connection events needed to send writes of the given sizes (value
    /// bytes, count) back to back, at least: their LL packets packed in
    /// order into events, each event taking exchanges (packet + empty ACK)
    /// while they fit in its budget and under the per-event cap, the first
    /// one always. In-order greedy packing uses the fewest events, and the
    /// link only adds to it (notifications lengthen exchanges, the host
    /// queue and retransmissions delay packets).
    fn data_events(&self, writes: &[(usize, u64)]) -> u64 {
        let budget = self.event_budget();
        let cap = self.max_packets_per_event.unwrap_or(u32::MAX);
        let (mut events, mut used, mut n) = (0u64, Duration::ZERO, 0u32);
        for &(value, count) in writes {
            let frags = self.fragments(ATT_HEADER + value);
            for _ in 0..count {
                for &f in &frags {
                    let x = self.exchange_time(f, 0);
                    if events == 0 || used + x > budget || n >= cap {
                        events += 1;
                        used = Duration::ZERO;
                        n = 0;
                    }
                    used += x;
                    n += 1;
                }
            }
        }
        events
    }

    /// The link's lower bound for sending an image of `image_bytes` in
    /// Packet writes of `write_payload` bytes, in this model.
    ///
    /// Secure DFU sends the image in data objects of
    /// [`DATA_OBJECT_MAX_SIZE`] bytes, each a CREATE, its writes and an
    /// EXECUTE, in that order (the device takes them in order). At best
    /// they go back to back: CREATE and EXECUTE are Write Requests, the
    /// writes Write Commands that need not wait for CREATE's answer. The
    /// next CREATE cannot: ATT allows one outstanding request (Core Vol 3
    /// Part F §3.3.2), so it waits for EXECUTE's write response. That
    /// response misses the exchange that delivered EXECUTE (the
    /// peripheral's application answers after T_IFS) and, EXECUTE being the
    /// central's last packet, its event; it comes in the next event, and
    /// the central's host queues CREATE for the one after. So an object
    /// costs D' events, its LL packets (CREATE, the writes, EXECUTE) packed
    /// in order into events of budget E = min(event length, CI), plus one
    /// event for EXECUTE's answer. From the first CREATE to the last
    /// EXECUTE's answer: `T = (Σ_objects (D' + 1) − 1) × CI`. Flash time
    /// (erase, programs behind the writes) only adds to it.
    ///
    /// `streaming_seconds` is the bare write stream packed the same way,
    /// `ceil(N / (k·p)) × CI` for one-packet writes.
    pub fn bound(&self, image_bytes: usize, write_payload: usize) -> Bound {
        let p = write_payload.max(1);
        let obj = DATA_OBJECT_MAX_SIZE as usize;
        let ci = self.conn_interval.as_secs_f64();
        // `size` bytes in writes: full ones of p bytes and a shorter last one.
        let writes = |size: usize| -> Vec<(usize, u64)> {
            let mut v = vec![(p, (size / p) as u64)];
            if !size.is_multiple_of(p) {
                v.push((size % p, 1));
            }
            v
        };
        // An object's packets: CREATE, its writes, EXECUTE.
        let object_packets = |size: usize| -> Vec<(usize, u64)> {
            let mut v = vec![(CREATE_VALUE, 1)];
            v.extend(writes(size));
            v.push((EXECUTE_VALUE, 1));
            v
        };
        let full_objects = (image_bytes / obj) as u64;
        let last = image_bytes % obj;
        let d_full = self.data_events(&object_packets(obj));
        let d_last = if last > 0 {
            self.data_events(&object_packets(last))
        } else {
            0
        };
        let objects = full_objects + u64::from(last > 0);
        let events =
            (full_objects * (d_full + 1) + if last > 0 { d_last + 1 } else { 0 }).saturating_sub(1);
        let stream_events = self.data_events(&writes(image_bytes));
        let frags = self.fragments(ATT_HEADER + p);
        let f = frags.len() as u32;
        let k = self.packets_per_event(frags.first().copied().unwrap_or(0));
        let x = self.write_time(p);
        let per_event = if f == 1 {
            format!("k = floor(E / X) = {k} writes per event")
        } else {
            format!(
                "{f} LL packets per write, up to floor(E / X_packet) = {k} full packets per \
                 event (fragments packed in order)"
            )
        };
        let mut formula = String::new();
        // Writing into a String cannot fail.
        let _ = write!(
            formula,
            "T = (Σ_objects (D' + 1) − 1) × CI, D' = events for an object's CREATE, its \
             w = ceil(object / p) writes of p = {p} B and its EXECUTE packed in order \
             ({d_full} for a full object), + 1 event for EXECUTE's answer before the next \
             CREATE; X = {x} µs per write ({f} LL packet(s) of ≤ {dl} B, each + T_IFS + \
             empty ACK + T_IFS, {phy:?}); E = min(event length, CI) = {e} µs; {per_event}; \
             {objects} objects of ≤ {obj} B: {events} events × {ci_ms} ms = {t:.3} s. \
             Streaming only: ceil(N / (k·p)) × CI = {stream_events} × {ci_ms} ms = {ts:.3} s \
             for N = {image_bytes} B.",
            x = x.as_micros(),
            dl = self.data_length,
            phy = self.phy,
            e = self.event_budget().as_micros(),
            ci_ms = self.conn_interval.as_secs_f64() * 1e3,
            t = events as f64 * ci,
            ts = stream_events as f64 * ci,
        );
        Bound {
            seconds: events as f64 * ci,
            streaming_seconds: stream_events as f64 * ci,
            packets_per_event: k,
            packets_per_write: f,
            formula,
        }
    }
}

/// A throughput bound and how it was computed.
#[derive(Debug, Clone, PartialEq)]
pub struct Bound {
    /// Lower bound on the transfer (each data object's CREATE, writes and
    /// EXECUTE, and the event for EXECUTE's answer), in seconds.
    pub seconds: f64,
    /// The bare write stream without round trips, in seconds.
    pub streaming_seconds: f64,
    /// k: LL packets of a write's first (largest) fragment that fit in one
    /// event; with one-packet writes, the writes per event.
    pub packets_per_event: u32,
    /// LL packets one Packet write is cut into.
    pub packets_per_write: u32,
    /// The formula with this link's numbers in it.
    pub formula: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn air_time_follows_the_packet_format() {
        // 1M: (1 + 4 + 2 + 27 + 3) octets × 8 µs = 296 µs.
        assert_eq!(Phy::M1.packet_time(27), Duration::from_micros(296));
        // 2M: (2 + 4 + 2 + 251 + 3) × 4 µs = 1048 µs; empty: 11 × 4 = 44 µs.
        assert_eq!(Phy::M2.packet_time(251), Duration::from_micros(1048));
        assert_eq!(Phy::M2.packet_time(0), Duration::from_micros(44));
        // Empty on 1M: 10 octets = 80 µs.
        assert_eq!(Phy::M1.packet_time(0), Duration::from_micros(80));
    }

    #[test]
    fn fast_setting_sends_five_full_writes_per_event() {
        let p = BleParams::fast_15ms();
        p.validate().unwrap();
        assert_eq!(p.write_payload(), 244);
        // 244 + 3 + 4 = 251: exactly one LL packet.
        assert_eq!(p.fragments(ATT_HEADER + 244), vec![251]);
        assert_eq!(p.exchange_time(251, 0), Duration::from_micros(1392));
        assert_eq!(p.packets_per_event(251), 5);
        let capped = BleParams {
            max_packets_per_event: Some(3),
            ..p.clone()
        };
        assert_eq!(capped.packets_per_event(251), 3);
    }

    /// LE 1M, 30 ms, no Data Length Update: every write in 27-octet packets.
    fn short_packets() -> BleParams {
        BleParams {
            phy: Phy::M1,
            conn_interval: Duration::from_millis(30),
            data_length: 27,
            ..BleParams::fast_15ms()
        }
    }

    #[test]
    fn writes_fragment_at_the_data_length() {
        let p = short_packets();
        p.validate().unwrap();
        // 244 + 7 = 251 octets in 27-octet packets: 9 × 27 + 8.
        let f = p.fragments(ATT_HEADER + 244);
        assert_eq!(f.len(), 10);
        assert_eq!(f.iter().map(|&n| usize::from(n)).sum::<usize>(), 251);
        assert_eq!(f[9], 8);
    }

    #[test]
    fn bound_counts_objects_and_round_trips() {
        let p = BleParams::fast_15ms();
        // One full object: CREATE (13 octets: 440 µs) + 17 writes (16 × 244
        // + 192, 1392 µs each) + EXECUTE (8 octets: 420 µs). Events of
        // 7500 µs: CREATE + 5 writes (7400 µs), 5, 5, 2 writes + EXECUTE:
        // D' = 4, + 1 for EXECUTE's answer, − 1.
        assert_eq!(p.exchange_time(13, 0), Duration::from_micros(440));
        let b = p.bound(4096, 244);
        assert_eq!((b.packets_per_event, b.packets_per_write), (5, 1));
        assert!((b.seconds - 4.0 * 0.015).abs() < 1e-9, "{}", b.formula);
        // Two objects: 2 × (4 + 1) − 1 events.
        let b2 = p.bound(8192, 244);
        assert!((b2.seconds - 9.0 * 0.015).abs() < 1e-9, "{}", b2.formula);
        // The streaming bound is ceil(N / (k·p)) × CI when writes are one packet.
        let b = p.bound(475_384, 244);
        let k_p: f64 = 5.0 * 244.0;
        let expect = (475_384.0 / k_p).ceil() * 0.015;
        assert!(
            (b.streaming_seconds - expect).abs() < 0.016,
            "{} vs {expect}",
            b.streaming_seconds
        );
        assert!(b.seconds > b.streaming_seconds);
        assert!(
            b.formula.contains("k = floor(E / X) = 5 writes per event"),
            "{}",
            b.formula
        );
        // A shorter interval with the same event budget halves the time.
        let fast = BleParams::fast_7_5ms().bound(475_384, 244);
        assert!((fast.seconds * 2.0 - b.seconds).abs() < 1e-6);
    }

    #[test]
    fn fragmented_writes_cost_more_events() {
        let phone = short_packets();
        let b = phone.bound(475_384, phone.write_payload());
        // 1M, 27-octet packets: X_packet = 296 + 150 + 80 + 150 = 676 µs,
        // floor(7500 / 676) = 11 packets per event, 10 packets per write.
        assert_eq!((b.packets_per_event, b.packets_per_write), (11, 10));
        // About 1.1 writes per 30 ms event: far slower than the fast setting.
        let fast = BleParams::fast_15ms().bound(475_384, 244);
        assert!(
            b.streaming_seconds > 4.0 * fast.streaming_seconds,
            "{}",
            b.formula
        );
        assert!(b.seconds > b.streaming_seconds);
    }

    #[test]
    fn invalid_parameters_are_named() {
        let mut p = BleParams::fast_15ms();
        p.data_length = 300;
        assert_eq!(p.validate(), Err(InvalidParams::DataLength(300)));
        p = BleParams::fast_15ms();
        p.conn_interval = Duration::from_millis(5);
        assert!(matches!(p.validate(), Err(InvalidParams::ConnInterval(_))));
    }
}

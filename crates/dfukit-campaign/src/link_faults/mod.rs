//! Link faults: seeded schedules of dropped, corrupted, duplicated and
//! delayed frames, disconnects and device resets, injected between dfukit's
//! host and a simulated board ([`dfukit_sim::links::faults`]), one
//! transport at a time, in virtual time.
//!
//! For each transport a clean update is run first to count its frames in
//! each direction; each schedule then places one to [`MAX_FAULTS`] faults
//! at seeded frames of that update. Every run must end with the new image
//! installed and the host saying so, or with an error from the host and the
//! board still able to take the update: running it again without faults
//! completes (for a board that keeps its old image, the old image is also
//! checked right after the error). Never a corrupt image, never a success
//! for an update that did not happen.

pub mod dfuse;
pub mod nordic;

use crate::{parallel, TrialRng};
use dfukit_sim::links::faults::{Direction, LinkFault, Schedule, ScheduledFault};
use serde::Serialize;
use std::time::{Duration, Instant};

/// Most faults in one schedule.
pub const MAX_FAULTS: u64 = 4;

/// The kinds of fault a transport can suffer (a transport lists those that
/// mean something on it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// [`LinkFault::Drop`].
    Drop,
    /// [`LinkFault::Corrupt`].
    Corrupt,
    /// [`LinkFault::Duplicate`].
    Duplicate,
    /// [`LinkFault::Delay`].
    Delay,
    /// [`LinkFault::Disconnect`].
    Disconnect,
    /// [`LinkFault::ResetDevice`].
    ResetDevice,
}

/// What one run found.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// The host reported success and the board runs the new image.
    Completed,
    /// The host reported an error (its code: `dfukit::nordic::dfu::timeout`);
    /// the board kept what it must keep, and a run without faults then
    /// completed.
    CleanError(String),
    /// The board holds or runs an image that is neither the old nor the
    /// new one (or broke a flash rule), and the host did not catch it.
    SilentCorruption(String),
    /// The host reported success for an update that did not happen.
    FalseSuccess(String),
    /// After the host's error the board could not be updated by a run
    /// without faults, or lost the image it had to keep.
    Bricked(String),
}

/// A transport under link faults.
pub trait Transport: Sync {
    /// Short name (a JSON value): `serial-slip`.
    fn name(&self) -> &'static str;
    /// The board, the host and the update, in words.
    fn describe(&self) -> String;
    /// Frames of a clean update, to the device and to the host.
    fn clean_frames(&self) -> (u64, u64);
    /// The faults that mean something on this transport, per direction.
    fn kinds(&self, dir: Direction) -> &'static [FaultKind];
    /// Runs one update under `schedule`: the verdict, and how many of the
    /// schedule's faults fired (a fault placed past the frames the run
    /// carried never fires).
    fn run(&self, schedule: &Schedule) -> (Verdict, u64);
}

/// Counted outcomes.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Tally {
    /// Schedules run.
    pub schedules: u64,
    /// Updates that completed despite the faults.
    pub completed: u64,
    /// Updates that ended in a clear error, the board intact.
    pub clean_errors: u64,
    /// Runs that left a corrupt image unnoticed.
    pub silent_corruption: u64,
    /// Runs where the host reported an update that did not happen.
    pub false_success: u64,
    /// Runs after which the board could not be updated.
    pub bricked: u64,
    /// Faults that fired (a fault scheduled past the frames a run carried
    /// never fires).
    pub faults_fired: u64,
    /// The campaign's seed.
    pub seed: u64,
}

impl Tally {
    fn add(&mut self, v: &Verdict, fired: u64) {
        self.schedules += 1;
        self.faults_fired += fired;
        match v {
            Verdict::Completed => self.completed += 1,
            Verdict::CleanError(_) => self.clean_errors += 1,
            Verdict::SilentCorruption(_) => self.silent_corruption += 1,
            Verdict::FalseSuccess(_) => self.false_success += 1,
            Verdict::Bricked(_) => self.bricked += 1,
        }
    }

    fn merge(&mut self, o: &Tally) {
        self.schedules += o.schedules;
        self.completed += o.completed;
        self.clean_errors += o.clean_errors;
        self.silent_corruption += o.silent_corruption;
        self.false_success += o.false_success;
        self.bricked += o.bricked;
        self.faults_fired += o.faults_fired;
    }
}

/// One transport's figures.
#[derive(Debug, Clone, Serialize)]
pub struct TransportReport {
    /// [`Transport::name`].
    pub name: &'static str,
    /// [`Transport::describe`].
    pub description: String,
    /// Frames of a clean update (to the device, to the host).
    pub clean_frames: (u64, u64),
    /// Outcomes.
    #[serde(flatten)]
    pub tally: Tally,
    /// The clean errors by the host's error code.
    pub errors: std::collections::BTreeMap<String, u64>,
    /// CPU time spent in this transport's runs, summed over threads.
    pub cpu_s: f64,
    /// The first failing schedules (at most five), each with its faults.
    pub failures: Vec<String>,
}

/// A whole campaign's figures.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Per transport.
    pub transports: Vec<TransportReport>,
    /// All transports together.
    pub total: Tally,
    /// Wall time.
    pub seconds: f64,
    /// Threads the runs used.
    pub threads: usize,
}

impl Report {
    /// True when no run corrupted an image silently, claimed a false
    /// success or left a board that could not be updated.
    pub fn passed(&self) -> bool {
        let t = &self.total;
        t.silent_corruption == 0 && t.false_success == 0 && t.bricked == 0
    }
}

/// A seeded schedule for a transport whose clean update carries `frames`
/// (to the device, to the host).
pub fn schedule(t: &dyn Transport, rng: &mut TrialRng) -> Schedule {
    let (to_device, to_host) = t.clean_frames();
    (0..rng.range(1, MAX_FAULTS))
        .map(|_| {
            // Two of three faults hit the busier direction's requests.
            let dir = if to_host == 0 || rng.range(0, 2) < 2 {
                Direction::ToDevice
            } else {
                Direction::ToHost
            };
            let frames = match dir {
                Direction::ToDevice => to_device,
                Direction::ToHost => to_host,
            };
            let kinds = t.kinds(dir);
            let kind = kinds[rng.range(0, kinds.len() as u64 - 1) as usize];
            ScheduledFault {
                dir,
                frame: rng.range(0, frames.max(1) - 1),
                fault: fault(kind, rng),
            }
        })
        .collect()
}

fn fault(kind: FaultKind, rng: &mut TrialRng) -> LinkFault {
    match kind {
        FaultKind::Drop => LinkFault::Drop,
        FaultKind::Corrupt => LinkFault::Corrupt {
            at: rng.range(0, 4095) as usize,
            xor: rng.range(1, 255) as u8,
        },
        FaultKind::Duplicate => LinkFault::Duplicate,
        // From 1 ms to 10 s, evenly over the decades: most delays are
        // short, some outlast every timeout of the hosts.
        FaultKind::Delay => LinkFault::Delay(Duration::from_micros(
            (1000.0 * 10f64.powf(4.0 * rng.fraction())) as u64,
        )),
        FaultKind::Disconnect => LinkFault::Disconnect,
        FaultKind::ResetDevice => LinkFault::ResetDevice,
    }
}

/// Runs `per_transport` seeded schedules on each transport (all
/// transports' runs share the threads) and counts the verdicts.
pub fn run(transports: &[&dyn Transport], per_transport: u64, seed: u64, threads: usize) -> Report {
    let started = Instant::now();
    let mut work = Vec::new();
    for (i, t) in transports.iter().enumerate() {
        // Each transport's schedules come from its name, so a run of one
        // transport (`--transport`) replays the same schedules.
        let stream = t.name().bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        for n in 0..per_transport {
            let mut rng = TrialRng::new(seed, stream ^ n);
            work.push((i, schedule(*t, &mut rng)));
        }
    }
    let verdicts = parallel::run(&work, threads, |(i, s)| {
        let t0 = Instant::now();
        let (v, fired) = transports[*i].run(s);
        (v, fired, t0.elapsed())
    });
    let mut reports: Vec<TransportReport> = transports
        .iter()
        .map(|t| TransportReport {
            name: t.name(),
            description: t.describe(),
            clean_frames: t.clean_frames(),
            tally: Tally {
                seed,
                ..Tally::default()
            },
            errors: Default::default(),
            cpu_s: 0.0,
            failures: Vec::new(),
        })
        .collect();
    for ((i, s), (v, fired, took)) in work.iter().zip(&verdicts) {
        let r = &mut reports[*i];
        r.tally.add(v, *fired);
        if let Verdict::CleanError(code) = v {
            *r.errors.entry(code.clone()).or_default() += 1;
        }
        r.cpu_s += took.as_secs_f64();
        let what = match v {
            Verdict::Completed | Verdict::CleanError(_) => None,
            Verdict::SilentCorruption(w) => Some(("silent corruption", w)),
            Verdict::FalseSuccess(w) => Some(("false success", w)),
            Verdict::Bricked(w) => Some(("bricked", w)),
        };
        // The first five of each kind, so one common failure does not hide
        // a rarer one.
        if let Some((kind, w)) = what {
            let prefix = format!("{kind}: ");
            if r.failures.iter().filter(|f| f.starts_with(&prefix)).count() < 5 {
                r.failures.push(format!("{prefix}{w}; faults {s:?}"));
            }
        }
    }
    let mut total = Tally {
        seed,
        ..Tally::default()
    };
    for r in &reports {
        total.merge(&r.tally);
    }
    Report {
        transports: reports,
        total,
        seconds: started.elapsed().as_secs_f64(),
        threads,
    }
}

/// Every built-in transport, set up (each runs its clean update once).
pub fn transports() -> Result<Vec<Box<dyn Transport>>, crate::SetupError> {
    let mut v = nordic::transports()?;
    v.extend(dfuse::transports()?);
    Ok(v)
}

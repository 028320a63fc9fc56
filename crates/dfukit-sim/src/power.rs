//! Power cuts across all the chips of a board.
//!
//! MCUboot's simulator learns how many flash operations a clean run makes,
//! then for every k cuts power before operation k, reboots, and checks that
//! the device recovers. [`PowerSupply`] does that counting for a board: the
//! board asks it before applying each operation, on whichever chip, and it
//! says whether to go ahead, to cut before, or to cut part-way through
//! (which MCUboot cannot do: sequential-storage-style torn programs and
//! half-erased sectors).
//!
//! ```
//! use dfukit_sim::{PowerCutPlan, PowerSupply};
//!
//! // A clean run tells how many operations there are ...
//! let mut supply = PowerSupply::new(PowerCutPlan::Never);
//! for _ in 0..3 { assert!(supply.begin_op().proceeds()); }
//! let total = supply.ops();
//! // ... then each trial cuts before one of them.
//! for plan in PowerCutPlan::each_before(total) {
//!     let mut supply = PowerSupply::new(plan);
//!     // run the scenario, then power_on(PowerCutPlan::Never) and check recovery
//! #   let _ = &mut supply;
//! }
//! ```

use std::time::Duration;

use dfukit_core::FlashOp;
use serde::{Deserialize, Serialize};

use crate::flash::{CutPoint, FlashChip, FlashModelError};

/// When the power fails, counted in flash operations since power-on.
///
/// Operations are numbered from 1 across every chip of the board, in the
/// order the board starts them.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub enum PowerCutPlan {
    /// Power stays on (a clean run, or a run that only counts).
    #[default]
    Never,
    /// Power fails just before operation `op`: it never starts.
    Before {
        /// The operation, from 1.
        op: u64,
    },
    /// Power fails part-way through operation `op`.
    During {
        /// The operation, from 1.
        op: u64,
        /// How far it got.
        at: CutPoint,
    },
}

impl PowerCutPlan {
    /// Cut before operation `op` (from 1).
    pub fn before(op: u64) -> Self {
        PowerCutPlan::Before { op }
    }

    /// Cut part-way through operation `op` (from 1).
    pub fn during(op: u64, at: CutPoint) -> Self {
        PowerCutPlan::During { op, at }
    }

    /// "Cut before k" for every k in `1..=total`: MCUboot's exhaustive trial.
    pub fn each_before(total: u64) -> impl Iterator<Item = PowerCutPlan> {
        (1..=total).map(PowerCutPlan::before)
    }

    /// "Cut part-way through k" at `at` for every k in `1..=total`.
    pub fn each_during(total: u64, at: CutPoint) -> impl Iterator<Item = PowerCutPlan> {
        (1..=total).map(move |op| PowerCutPlan::during(op, at))
    }

    /// The operation the plan fires at, if any.
    pub fn op(&self) -> Option<u64> {
        match *self {
            PowerCutPlan::Never => None,
            PowerCutPlan::Before { op } | PowerCutPlan::During { op, .. } => Some(op),
        }
    }
}

/// What the board must do with the operation it is about to start.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PowerGate {
    /// Power is on: apply the operation in full.
    Proceed,
    /// Power failed just now, before the operation: do not apply it.
    CutBefore,
    /// Power fails part-way: apply the operation up to this point only.
    CutDuring(CutPoint),
    /// Power was already off: nothing runs.
    Off,
}

impl PowerGate {
    /// True for [`PowerGate::Proceed`].
    pub fn proceeds(&self) -> bool {
        matches!(self, PowerGate::Proceed)
    }
}

/// What became of one operation passed through [`PowerSupply::apply`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpOutcome {
    /// Applied in full; the modelled duration.
    Completed(Duration),
    /// Applied in part, then power failed; the modelled time until the cut.
    Interrupted(Duration),
    /// Not applied: power failed before it, or was already off.
    PowerOff,
}

/// Counts a board's flash operations and fires a [`PowerCutPlan`].
#[derive(Debug, Clone, Default)]
pub struct PowerSupply {
    plan: PowerCutPlan,
    on: bool,
    ops: u64,
    lifetime_ops: u64,
    cuts: u64,
}

impl PowerSupply {
    /// Power on, with `plan` armed.
    pub fn new(plan: PowerCutPlan) -> Self {
        PowerSupply {
            plan,
            on: true,
            ops: 0,
            lifetime_ops: 0,
            cuts: 0,
        }
    }

    /// Power on, with no cut planned.
    pub fn always_on() -> Self {
        Self::new(PowerCutPlan::Never)
    }

    /// Called by the board before it starts each flash operation, on any
    /// chip. Counts the operation (when power is on) and says what to do.
    /// Once the plan fires, power stays off and later calls return
    /// [`PowerGate::Off`] without counting, until [`power_on`](Self::power_on).
    pub fn begin_op(&mut self) -> PowerGate {
        if !self.on {
            return PowerGate::Off;
        }
        self.ops += 1;
        self.lifetime_ops += 1;
        match self.plan {
            PowerCutPlan::Before { op } if op == self.ops => {
                self.cut();
                PowerGate::CutBefore
            }
            PowerCutPlan::During { op, at } if op == self.ops => {
                self.cut();
                PowerGate::CutDuring(at)
            }
            _ => PowerGate::Proceed,
        }
    }

    /// [`begin_op`](Self::begin_op), then applies `op` to `chip` as the gate
    /// says. A model error (a bad operation) is returned as is; the
    /// operation was still counted, as a real device would have started it.
    pub fn apply(
        &mut self,
        chip: &mut FlashChip,
        op: &FlashOp<'_>,
    ) -> Result<OpOutcome, FlashModelError> {
        Ok(match self.begin_op() {
            PowerGate::Proceed => OpOutcome::Completed(chip.apply(op)?),
            PowerGate::CutDuring(at) => OpOutcome::Interrupted(chip.apply_partial(op, at)?),
            PowerGate::CutBefore | PowerGate::Off => OpOutcome::PowerOff,
        })
    }

    /// Cuts power now, whatever the plan (a user's "pull the plug", or a
    /// board cutting at a wall-clock moment between operations).
    pub fn cut(&mut self) {
        if self.on {
            self.on = false;
            self.cuts += 1;
        }
    }

    /// Restores power with a new plan (a nested reset during recovery, or
    /// [`PowerCutPlan::Never`]); operation numbers start again from 1.
    pub fn power_on(&mut self, plan: PowerCutPlan) {
        self.plan = plan;
        self.on = true;
        self.ops = 0;
    }

    /// True while powered.
    pub fn is_on(&self) -> bool {
        self.on
    }

    /// The armed plan.
    pub fn plan(&self) -> PowerCutPlan {
        self.plan
    }

    /// Operations started since power-on, including one that the plan cut.
    /// After a clean run this is the `total` to iterate cut points over.
    pub fn ops(&self) -> u64 {
        self.ops
    }

    /// Operations started over all power cycles.
    pub fn lifetime_ops(&self) -> u64 {
        self.lifetime_ops
    }

    /// Number of power cuts so far.
    pub fn cuts(&self) -> u64 {
        self.cuts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_counts_and_proceeds() {
        let mut s = PowerSupply::always_on();
        for _ in 0..5 {
            assert_eq!(s.begin_op(), PowerGate::Proceed);
        }
        assert_eq!(s.ops(), 5);
        assert!(s.is_on());
        assert_eq!(s.cuts(), 0);
    }

    #[test]
    fn before_fires_exactly_once_at_k() {
        let mut s = PowerSupply::new(PowerCutPlan::before(3));
        assert!(s.begin_op().proceeds());
        assert!(s.begin_op().proceeds());
        assert_eq!(s.begin_op(), PowerGate::CutBefore);
        assert!(!s.is_on());
        assert_eq!(s.begin_op(), PowerGate::Off);
        assert_eq!(s.ops(), 3);
        s.power_on(PowerCutPlan::Never);
        assert!(s.begin_op().proceeds());
        assert_eq!((s.ops(), s.lifetime_ops(), s.cuts()), (1, 4, 1));
    }

    #[test]
    fn during_hands_out_the_cut_point() {
        let mut s = PowerSupply::new(PowerCutPlan::during(1, CutPoint::Bytes(7)));
        assert_eq!(s.begin_op(), PowerGate::CutDuring(CutPoint::Bytes(7)));
        assert_eq!(s.begin_op(), PowerGate::Off);
    }

    #[test]
    fn plans_enumerate_and_roundtrip_json() {
        let plans: Vec<_> = PowerCutPlan::each_before(3).collect();
        assert_eq!(
            plans.iter().map(|p| p.op()).collect::<Vec<_>>(),
            [Some(1), Some(2), Some(3)]
        );
        let p = PowerCutPlan::during(4, CutPoint::Fraction(0.25));
        let json = serde_json::to_string(&p).unwrap();
        assert_eq!(serde_json::from_str::<PowerCutPlan>(&json).unwrap(), p);
    }
}

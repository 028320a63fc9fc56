//! Driving any simulated board by its own clock.
//!
//! Every board implements [`dfukit_core::Board`]; what a driver needs
//! beyond the trait's methods, written once for all boards, lives here.

use dfukit_core::Board;
use std::time::Duration;

/// Advances `board` through its own events until `done` holds or `limit`
/// of its time has passed; returns the time it took if `done` held. A
/// board with nothing left to do before the limit stops the wait at once.
pub fn run_until<B: Board>(
    board: &mut B,
    limit: Duration,
    done: impl Fn(&B) -> bool,
) -> Option<Duration> {
    let start = board.now();
    let until = start + limit;
    while !done(board) {
        match board.next_wakeup() {
            Some(t) if t <= until => board.advance(t),
            _ => return None,
        }
    }
    Some(board.now().saturating_duration_since(start))
}

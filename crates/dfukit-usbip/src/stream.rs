//! What the client and the server share about reading a TCP stream.

use std::io;

/// Whether a read failed only for now: its timeout expired (`WouldBlock` or `TimedOut`, by
/// platform) or a signal interrupted it. Both ends read with short timeouts so that they can
/// check deadlines and stop flags between reads, and then simply read again.
pub(crate) fn read_again(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}

//! The dfukit command-line tool.
fn main() {}

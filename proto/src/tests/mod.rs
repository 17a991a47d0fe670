//! Scripted conversations with a fake server in memory.

mod bans;
mod harness;
mod hostile;
mod ids;
mod limits;
mod logs;
mod props;
mod stanzas;
mod stream;
mod verdicts;

/// The instant the tests count from. The core never reads a clock: every
/// test hands it times as offsets from this one, and `Instant` has no way to
/// be made other than by reading the clock, so this is the only reading, in
/// test code only.
pub(crate) fn origin() -> std::time::Instant {
    std::time::Instant::now()
}

//! Scripted conversations with a fake server in memory.

mod harness;
mod hostile;
mod props;
mod stanzas;
mod stream;

//! What the integration tests of axrelay share, as a library of its own so
//! that each test binary uses what it needs without the rest being dead.
//!
//! Only the root package's integration tests know where the `axrelay`
//! binary is (`CARGO_BIN_EXE_axrelay`), so whatever starts it here takes its
//! path from the caller.

pub mod docs;
pub mod e2e;
pub mod json;
pub mod server;

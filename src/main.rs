//! `axrelay`: run the relay, make secrets, compute and look up pseudonyms.

#![forbid(unsafe_code)]

mod cli;
mod commands;
mod launch;
mod signals;

#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::process::ExitCode;

use clap::Parser;

use cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let status = match cli.command {
        Command::Run(args) => commands::run::run(&args),
        Command::Secret => commands::secret::secret(),
        Command::Hash(args) => commands::hash::hash(&args),
        Command::Status(args) => commands::status::status(&args),
    };
    ExitCode::from(status as u8)
}

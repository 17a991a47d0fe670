//! `axrelay`: run the relay, check its configuration, make secrets, compute
//! and look up pseudonyms.

#![forbid(unsafe_code)]

mod cli;
mod commands;
mod launch;
mod signals;

#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::process::ExitCode;

use clap::{CommandFactory, Parser};

use cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let status = match cli.command {
        Command::Run(args) => commands::run::run(&args),
        Command::Check(args) => commands::check::check(&args),
        Command::Secret => commands::secret::secret(),
        Command::Hash(args) => commands::hash::hash(&args),
        Command::Ban(args) => commands::ban::ban(&args),
        Command::Unban(args) => commands::ban::unban(&args),
        Command::Bans(args) => commands::ban::bans(&args),
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "axrelay",
                &mut std::io::stdout(),
            );
            commands::Status::Ok
        }
        Command::Manpage { dir } => commands::manpage(Cli::command(), &dir),
        Command::Status(args) => commands::status::status(&args),
    };
    ExitCode::from(status as u8)
}

//! The command line (SPEC §7), in the 2014 tool's shape.

use std::path::PathBuf;

use axrelay::config::DEFAULT_PATH;
use axrelay::logging::Verbosity;
use clap::{Args, Parser, Subcommand};

const EXIT_STATUS: &str = "\
Exit status:
  0  stopped cleanly after SIGINT or SIGTERM, or the command succeeded
  1  a runtime failure: the store or the log file cannot be opened, a store
     operation of `hash`, `ban`, `unban` or `bans` failed, `check` could not
     open the store or reach the server, or the relay stopped for another
     reason
  2  a configuration or usage error; the message names file, section and key
  3  `run`: the XMPP server refused the component (wrong [relay] password, or
     the server does not know [relay] jid): fix the configuration, retrying
     will not help
  4  `hash --lookup`: a pseudonym was not found (printed as `=> None`)";

const RUN_STATUS: &str = "\
Exit status:
  0  stopped cleanly after SIGINT or SIGTERM
  1  a runtime failure: the store or the log file cannot be opened, a second
     stop signal, or the relay stopped for another reason
  2  a configuration or usage error; the message names file, section and key
  3  the XMPP server refused the component (wrong [relay] password, or the
     server does not know [relay] jid): fix the configuration, retrying will
     not help";

const HASH_STATUS: &str = "\
With --lookup, the running relay is asked through its control socket
([relay] control); when no relay answers there, the store is opened directly.

Exit status:
  0  every JID was hashed (with --lookup: every pseudonym was found)
  1  a runtime failure: the store or the log file cannot be opened, or a store
     operation failed
  2  a configuration or usage error (an argument that is not a JID, too); the
     message names file, section and key
  4  with --lookup: a pseudonym was not found (printed as `PSEUDONYM => None`)";

const BAN_STATUS: &str = "\
Exit status:
  0  done (also when there was nothing to change)
  1  a runtime failure: the store cannot be opened or failed, the ban list in
     it cannot be read, or the running relay reported an error
  2  a configuration or usage error (an argument that is not a pseudonym,
     too); the message names file, section and key";

const OPERATOR_ABOUT: &str = "\
The command asks the running relay through its control socket ([relay]
control); when no relay answers there, it opens the store itself.";

const CHECK_STATUS: &str = "\
Exit status:
  0  the configuration is valid, the store opens and the server's component
     port (and the proxy) answers; warnings do not change the status
  1  the configuration is valid, but the store cannot be opened or the server
     (or the proxy) cannot be reached
  2  a configuration or usage error; the message names file, section and key";

/// Anonymizing XMPP relay: an XEP-0114 component that gives every user a
/// stable pseudonym.
#[derive(Debug, Parser)]
#[command(name = "axrelay", version, after_help = EXIT_STATUS)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The sub-commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Connect to the XMPP server and relay until SIGINT or SIGTERM.
    #[command(after_help = RUN_STATUS)]
    Run(RunArgs),
    /// Check the configuration, open the store, connect to the server's
    /// component port (and the proxy), and say what was found.
    #[command(after_help = CHECK_STATUS)]
    Check(CheckArgs),
    /// Print a new random secret: base64 of 32 bytes, for `[hash] secret`
    /// and `encrypt`.
    Secret,
    /// Print the pseudonym of each JID (`JID => PSEUDONYM`), optionally
    /// storing the mapping; or, with --lookup, the JID behind each pseudonym.
    #[command(after_help = HASH_STATUS)]
    Hash(HashArgs),
    /// Print shell completions for SHELL.
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Write the manual pages (roff) into DIR: axrelay.1 and one per
    /// sub-command.
    Manpage {
        /// The directory, e.g. /usr/local/share/man/man1.
        #[arg(value_name = "DIR")]
        dir: PathBuf,
    },
    /// Ban a pseudonym: its messages, and messages to it, are refused with
    /// `forbidden` by every relay instance sharing the store, within a
    /// second.
    #[command(after_help = BAN_STATUS, after_long_help = format!("{OPERATOR_ABOUT}\n\n{BAN_STATUS}"))]
    Ban(BanArgs),
    /// Lift the ban on a pseudonym.
    #[command(after_help = BAN_STATUS, after_long_help = format!("{OPERATOR_ABOUT}\n\n{BAN_STATUS}"))]
    Unban(UnbanArgs),
    /// List the banned pseudonyms: pseudonym, when banned (UTC), reason.
    #[command(after_help = BAN_STATUS, after_long_help = format!("{OPERATOR_ABOUT}\n\n{BAN_STATUS}"))]
    Bans(BansArgs),
    /// Print the running relay's figures, read from its metrics endpoint
    /// (`[metrics] listen`); exit 2 when that is not set, 1 when nothing
    /// answers there.
    Status(StatusArgs),
}

/// Options every command that reads the configuration takes.
#[derive(Debug, Args)]
pub struct Common {
    /// Configuration file.
    #[arg(short = 'c', long = "config", value_name = "FILE", default_value = DEFAULT_PATH)]
    pub config: PathBuf,
    /// Log debug messages too.
    #[arg(short = 'd', long, conflicts_with = "quiet")]
    pub debug: bool,
    /// Log errors only.
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Also log to FILE (reopened when logrotate moves it, and on SIGHUP).
    #[arg(long, value_name = "FILE")]
    pub log_file: Option<PathBuf>,
}

impl Common {
    /// The chosen log level.
    pub fn verbosity(&self) -> Verbosity {
        if self.debug {
            Verbosity::Debug
        } else if self.quiet {
            Verbosity::Quiet
        } else {
            Verbosity::Normal
        }
    }
}

/// `axrelay run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub common: Common,
    /// Allow JIDs and pseudonyms in debug logs (message bodies are never
    /// logged). Off by default: logs must not de-anonymize anyone.
    #[arg(long)]
    pub log_sensitive: bool,
}

/// `axrelay check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Configuration file.
    #[arg(short = 'c', long = "config", value_name = "FILE", default_value = DEFAULT_PATH)]
    pub config: PathBuf,
}

/// `axrelay status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub common: Common,
}

/// `axrelay hash`.
#[derive(Debug, Args)]
pub struct HashArgs {
    #[command(flatten)]
    pub common: Common,
    /// Also store each mapping in the configured store.
    #[arg(short = 'S', long = "store", conflicts_with = "lookup")]
    pub store: bool,
    /// Treat the arguments as pseudonyms and print the real JID behind each
    /// (`PSEUDONYM => REAL`, or `PSEUDONYM => None`).
    #[arg(short = 'l', long)]
    pub lookup: bool,
    /// Say whether the running relay answered (through its control
    /// socket) or the store was opened directly.
    #[arg(short = 'v', long)]
    pub verbose: bool,
    /// JIDs (or pseudonyms, with --lookup).
    #[arg(value_name = "JID", required = true)]
    pub jids: Vec<String>,
}

/// Options of the commands that change or read the ban list.
#[derive(Debug, Args)]
pub struct Operator {
    #[command(flatten)]
    pub common: Common,
    /// Say whether the running relay answered (through its control
    /// socket) or the store was opened directly.
    #[arg(short = 'v', long)]
    pub verbose: bool,
}

/// `axrelay ban`.
#[derive(Debug, Args)]
pub struct BanArgs {
    #[command(flatten)]
    pub operator: Operator,
    /// Why, for the list (one line, at most 256 bytes).
    #[arg(long, value_name = "TEXT", default_value = "")]
    pub reason: String,
    /// The pseudonym: `LOCALPART@DOMAIN`, or the 45-character localpart.
    #[arg(value_name = "PSEUDONYM")]
    pub pseudonym: String,
}

/// `axrelay unban`.
#[derive(Debug, Args)]
pub struct UnbanArgs {
    #[command(flatten)]
    pub operator: Operator,
    /// The pseudonym: `LOCALPART@DOMAIN`, or the 45-character localpart.
    #[arg(value_name = "PSEUDONYM")]
    pub pseudonym: String,
}

/// `axrelay bans`.
#[derive(Debug, Args)]
pub struct BansArgs {
    #[command(flatten)]
    pub operator: Operator,
}

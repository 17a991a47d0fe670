//! What `ban`, `unban`, `bans` and `hash --lookup` share: asking the running
//! relay through its control socket, or, when no relay answers there,
//! opening the store directly.

use std::path::PathBuf;

use axrelay::admin::Admin;
use axrelay::config::{HashSettings, Settings};
use axrelay::control::client::{ask, Unanswered};
use axrelay::control::{perform, Answer, Request};
use axrelay::logging;
use axrelay_proto::pseudonym::Local;

use super::{config, open_store, Status};

/// Where requests go: the relay first, the store once no relay answers.
pub(super) struct Operator<'a> {
    settings: &'a Settings,
    hash: HashSettings,
    control: Option<PathBuf>,
    direct: Option<Admin>,
    /// The relay answered once.
    answered: bool,
    verbose: bool,
}

impl<'a> Operator<'a> {
    pub(super) fn new(settings: &'a Settings, verbose: bool) -> Result<Operator<'a>, Status> {
        Ok(Operator {
            hash: config(settings.hash())?,
            control: config(settings.control())?,
            settings,
            direct: None,
            answered: false,
            verbose,
        })
    }

    /// `[hash]`, as the configuration gives it.
    pub(super) fn hash(&self) -> &HashSettings {
        &self.hash
    }

    /// Whether the relay or the store was reached.
    pub(super) fn reached(&self) -> bool {
        self.answered || self.direct.is_some()
    }

    /// Carry `request` out; errors are reported here.
    pub(super) fn perform(&mut self, request: &Request) -> Result<Answer, Status> {
        if self.direct.is_none() {
            if let Some(path) = &self.control {
                match ask(path, request) {
                    Ok(Ok(answer)) => {
                        if self.verbose && !self.answered {
                            eprintln!(
                                "axrelay: answered by the running relay at {}",
                                path.display()
                            );
                        }
                        self.answered = true;
                        return Ok(answer);
                    }
                    Ok(Err(e)) => {
                        self.answered = true;
                        logging::fatal(format!(
                            "the running relay (control socket {}) reports: {e}",
                            path.display()
                        ));
                        return Err(Status::Failure);
                    }
                    Err(Unanswered::Failed(e)) => {
                        logging::fatal(format!(
                            "control socket {} ([relay] control): {e}; run as the relay's user \
                             or root",
                            path.display()
                        ));
                        return Err(Status::Failure);
                    }
                    Err(Unanswered::Untrusted(why)) => {
                        logging::fatal(format!(
                            "control socket {} ([relay] control): {why}; refusing to use it",
                            path.display()
                        ));
                        return Err(Status::Failure);
                    }
                    Err(Unanswered::NoRelay) => {
                        if self.verbose {
                            eprintln!(
                                "axrelay: no relay answers at {}; opening the store directly",
                                path.display()
                            );
                        }
                    }
                }
            } else if self.verbose {
                eprintln!("axrelay: [relay] control = none; opening the store directly");
            }
            let store = config(self.settings.store())?;
            let admin = Admin::new(
                open_store(&store)?,
                &self.hash.domain,
                self.hash.secret.as_bytes(),
                store.encrypt(),
            );
            self.direct = Some(admin);
        }
        let Some(admin) = &self.direct else {
            return Err(Status::Failure);
        };
        perform(admin, request).map_err(|e| {
            logging::fatal(e);
            Status::Failure
        })
    }
}

/// A typed pseudonym, `LOCALPART@DOMAIN` or the bare localpart (any case).
pub(super) fn pseudonym(typed: &str, domain: &str) -> Result<Local, String> {
    let (local, at) = match typed.split_once('@') {
        Some((l, d)) => (l, Some(d)),
        None => (typed, None),
    };
    let refuse = |why: &str| {
        format!(
            "'{typed}' is not a pseudonym of this relay: {why}; give LOCALPART@{domain} or the \
             45-character localpart"
        )
    };
    if let Some(d) = at {
        if !d.eq_ignore_ascii_case(domain) {
            return Err(refuse(&format!("not at {domain}")));
        }
    }
    Local::parse(&local.to_ascii_lowercase())
        .ok_or_else(|| refuse("the localpart has 45 characters from a-z and 2-7"))
}

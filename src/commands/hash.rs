//! `axrelay hash`: the pseudonym the relay gives a JID, optionally stored;
//! with `--lookup`, the JID behind a pseudonym.
//!
//! Typed JIDs are normalised the way the server normalises stanza JIDs
//! (stringprep), so the output is what the relay would compute. Output is
//! `JID => PSEUDONYM` with the bare pseudonym, as `/whoami` answers it.

use axrelay::config::{HashSettings, Settings};
use axrelay::control::{Answer, Request};
use axrelay::logging;
use axrelay_proto::pseudonym::Local;
use axrelay_proto::{Jid, Pseudonymizer, StoreCodec};

use super::operator::Operator;
use super::{config, open_store, start, Status};
use crate::cli::HashArgs;

/// Run `hash`; the status follows `--help`.
pub fn hash(args: &HashArgs) -> Status {
    let result = start(&args.common).and_then(|(settings, _)| {
        if args.lookup {
            lookup(&settings, &args.jids, args.verbose)
        } else {
            compute(&settings, &args.jids, args.store)
        }
    });
    match result {
        Ok(status) | Err(status) => status,
    }
}

/// A typed JID, normalised like the server does.
fn normalise(typed: &str) -> Result<String, String> {
    let jid = jid::Jid::new(typed).map_err(|e| format!("'{typed}' is not a valid JID: {e}"))?;
    let normal = jid.to_string();
    Jid::parse(&normal).map_err(|e| format!("'{typed}': {e}"))?;
    Ok(normal)
}

fn compute(settings: &Settings, jids: &[String], store_it: bool) -> Result<Status, Status> {
    let hash = config(settings.hash())?;
    for w in settings.weaknesses() {
        log::warn!("{w} (`run` refuses this)");
    }
    let (store, codec, ttl) = if store_it {
        let s = config(settings.store())?;
        (Some(open_store(&s)?), StoreCodec::new(s.encrypt()), s.ttl())
    } else {
        (None, StoreCodec::new(None), 0)
    };
    let pseudonyms = Pseudonymizer::new(hash.secret.as_bytes());
    let mut status = Status::Ok;
    for typed in jids {
        let normal = match normalise(typed) {
            Ok(n) => n,
            Err(e) => {
                logging::fatal(e);
                status = status.max(Status::Config);
                continue;
            }
        };
        let Ok(jid) = Jid::parse(&normal) else {
            continue;
        };
        if jid.domain() == hash.domain {
            log::warn!(
                "{normal} is at the relay's own domain: the relay gives it no pseudonym and \
                 never relays it"
            );
            println!("{normal} => None");
            continue;
        }
        let identity = hash.identity.identity(&jid);
        let local = pseudonyms.localpart(identity);
        println!("{normal} => {local}@{}", hash.domain);
        if let Some(store) = &store {
            let key = codec.key(&local, &hash.domain);
            let value = codec.seal(&local, &hash.domain, identity);
            if let Err(e) = store.put(&key, &value, ttl) {
                logging::fatal(format!("{normal}: not stored: {e}"));
                status = status.max(Status::Failure);
            }
        }
    }
    Ok(status)
}

/// Split a typed pseudonym (`local@domain[/resource]`, or a bare localpart)
/// into its normalised localpart and domain.
fn pseudonym_parts(typed: &str, hash: &HashSettings) -> Result<(String, String), String> {
    if !typed.contains('@') {
        return Ok((typed.to_lowercase(), hash.domain.clone()));
    }
    let normal = normalise(typed)?;
    let jid = Jid::parse(&normal).map_err(|e| format!("'{typed}': {e}"))?;
    let local = jid.local().unwrap_or_default().to_owned();
    Ok((local, jid.domain().to_owned()))
}

fn lookup(settings: &Settings, pseudonyms: &[String], verbose: bool) -> Result<Status, Status> {
    let mut operator = Operator::new(settings, verbose)?;
    let hash = operator.hash().clone();
    let mut status = Status::Ok;
    let mut missing = false;
    for typed in pseudonyms {
        let (local, domain) = match pseudonym_parts(typed, &hash) {
            Ok(parts) => parts,
            Err(e) => {
                logging::fatal(e);
                status = status.max(Status::Config);
                continue;
            }
        };
        if domain != hash.domain {
            log::warn!("{typed} is not at the relay's domain {}", hash.domain);
            println!("{typed} => None");
            missing = true;
            continue;
        }
        let Some(local) = Local::parse(&local) else {
            println!("{typed} => None");
            missing = true;
            continue;
        };
        // A poisoned entry (one that does not open, or names someone whose
        // pseudonym is another) is a miss there too.
        match operator.perform(&Request::Lookup(local)) {
            Ok(Answer::Found(real)) => {
                println!("{typed} => {}", real.as_deref().unwrap_or("None"));
                missing |= real.is_none();
            }
            Ok(_) => {
                logging::fatal(format!("{typed}: lookup failed: an unexpected answer"));
                status = status.max(Status::Failure);
            }
            Err(failed) => {
                status = status.max(failed);
                // Neither the relay nor the store can be reached: the
                // others would fail the same way.
                if !operator.reached() {
                    break;
                }
            }
        }
    }
    // Errors say more than a miss.
    if status == Status::Ok && missing {
        status = Status::NotFound;
    }
    Ok(status)
}

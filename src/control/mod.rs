//! The running relay's control socket (SPEC §7): a Unix socket on which
//! `axrelay ban`, `unban`, `bans` and `hash --lookup` reach the relay's own
//! store, so that they work while the relay holds the database file.
//!
//! One request line per connection, answered with lines, then closed:
//!
//! | request | answer |
//! |---|---|
//! | `lookup LOCAL` | `found JID` or `none` |
//! | `ban LOCAL REASON` | `done` or `unchanged` (already banned) |
//! | `unban LOCAL` | `done` or `unchanged` (not banned) |
//! | `bans` | `ban LOCAL UNIXTIME REASON` per ban, then `end` |
//!
//! Anything may instead be answered `error TEXT`. LOCAL is a pseudonym's
//! localpart; REASON the rest of the line, possibly empty.

pub mod client;
pub mod server;
pub mod trust;

use axrelay_proto::pseudonym::Local;
use axrelay_proto::Ban;

use crate::admin::{Admin, AdminError, Change};

/// The longest request line, newline included.
pub const MAX_REQUEST: usize = 1024;

/// Why a request line is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestError {
    /// LOCAL is not a pseudonym's localpart.
    NotAPseudonym,
    /// No such request.
    Unknown,
}

impl std::fmt::Display for RequestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RequestError::NotAPseudonym => "not a pseudonym's localpart",
            RequestError::Unknown => "unknown request",
        })
    }
}

impl std::error::Error for RequestError {}

/// Why a relay's answer is not one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnswerError {
    /// The relay reported this error.
    Reported(String),
    /// The answer does not fit the request.
    Malformed,
}

impl std::fmt::Display for AnswerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AnswerError::Reported(e) => f.write_str(e),
            AnswerError::Malformed => f.write_str("the relay's answer is malformed"),
        }
    }
}

impl std::error::Error for AnswerError {}

/// What a client asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Who is behind a pseudonym.
    Lookup(Local),
    /// Ban a pseudonym, for a reason.
    Ban(Local, String),
    /// Lift a ban.
    Unban(Local),
    /// The ban list.
    List,
}

impl Request {
    /// Parse a request line (without its newline).
    pub fn parse(line: &str) -> Result<Request, RequestError> {
        let (verb, rest) = line.split_once(' ').unwrap_or((line, ""));
        let local = |s: &str| Local::parse(s).ok_or(RequestError::NotAPseudonym);
        match verb {
            "lookup" => Ok(Request::Lookup(local(rest)?)),
            "ban" => {
                let (l, reason) = rest.split_once(' ').unwrap_or((rest, ""));
                Ok(Request::Ban(local(l)?, reason.to_owned()))
            }
            "unban" => Ok(Request::Unban(local(rest)?)),
            "bans" if rest.is_empty() => Ok(Request::List),
            _ => Err(RequestError::Unknown),
        }
    }

    /// Its first word, for logs.
    pub fn verb(&self) -> &'static str {
        match self {
            Request::Lookup(_) => "lookup",
            Request::Ban(..) => "ban",
            Request::Unban(_) => "unban",
            Request::List => "bans",
        }
    }

    /// The request line, without its newline.
    pub fn line(&self) -> String {
        match self {
            Request::Lookup(l) => format!("lookup {l}"),
            Request::Ban(l, reason) => format!("ban {l} {reason}"),
            Request::Unban(l) => format!("unban {l}"),
            Request::List => "bans".to_owned(),
        }
    }
}

/// The answer of a relay (or of the store directly).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// `lookup`: who, if anyone.
    Found(Option<String>),
    /// `ban`, `unban`.
    Changed(Change),
    /// `bans`.
    Bans(Vec<Ban>),
}

/// Carry `request` out against `admin`.
pub fn perform(admin: &Admin, request: &Request) -> Result<Answer, AdminError> {
    match request {
        Request::Lookup(l) => Ok(Answer::Found(admin.lookup(l)?)),
        Request::Ban(l, reason) => admin.ban(*l, reason).map(Answer::Changed),
        Request::Unban(l) => admin.unban(*l).map(Answer::Changed),
        Request::List => admin.bans().map(Answer::Bans),
    }
}

/// The answer's lines, each without its newline. An error's text is kept
/// to one line.
pub fn answer_lines<E: std::fmt::Display>(answer: &Result<Answer, E>) -> Vec<String> {
    match answer {
        Ok(Answer::Found(Some(jid))) => vec![format!("found {jid}")],
        Ok(Answer::Found(None)) => vec!["none".to_owned()],
        Ok(Answer::Changed(Change::Done)) => vec!["done".to_owned()],
        Ok(Answer::Changed(Change::Unchanged)) => vec!["unchanged".to_owned()],
        Ok(Answer::Bans(bans)) => bans
            .iter()
            .map(|b| format!("ban {} {} {}", b.local, b.at, b.reason))
            .chain(std::iter::once("end".to_owned()))
            .collect(),
        Err(e) => vec![format!(
            "error {}",
            e.to_string().replace(['\n', '\r'], " ")
        )],
    }
}

/// The answer in `lines`, as the relay sent them for `request`.
pub fn parse_answer(request: &Request, lines: &[&str]) -> Result<Answer, AnswerError> {
    let malformed = || AnswerError::Malformed;
    if let Some(e) = lines.first().and_then(|l| l.strip_prefix("error ")) {
        return Err(AnswerError::Reported(e.to_owned()));
    }
    match (request, lines) {
        (Request::Lookup(_), ["none"]) => Ok(Answer::Found(None)),
        (Request::Lookup(_), [found]) => found
            .strip_prefix("found ")
            .map(|j| Answer::Found(Some(j.to_owned())))
            .ok_or_else(malformed),
        (Request::Ban(..) | Request::Unban(_), ["done"]) => Ok(Answer::Changed(Change::Done)),
        (Request::Ban(..) | Request::Unban(_), ["unchanged"]) => {
            Ok(Answer::Changed(Change::Unchanged))
        }
        (Request::List, [bans @ .., "end"]) => bans
            .iter()
            .map(|line| {
                let mut parts = line.strip_prefix("ban ")?.splitn(3, ' ');
                let local = Local::parse(parts.next()?)?;
                let at = parts.next()?.parse().ok()?;
                let reason = parts.next().unwrap_or("").to_owned();
                Some(Ban { local, at, reason })
            })
            .collect::<Option<Vec<Ban>>>()
            .map(Answer::Bans)
            .ok_or_else(malformed),
        _ => Err(malformed()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const L: &str = "zi36rtka6iz3zuszk5un4svb4m4qvtsiqacao56f7bspy";

    #[test]
    fn requests_round_trip_and_junk_is_refused() {
        let l = Local::parse(L).unwrap();
        for r in [
            Request::Lookup(l),
            Request::Ban(l, "spam and worse".into()),
            Request::Ban(l, String::new()),
            Request::Unban(l),
            Request::List,
        ] {
            assert_eq!(Request::parse(&r.line()), Ok(r));
        }
        for junk in [
            "", "ban", "lookup x", "unban  ", "bans x", "LOOKUP", "\u{0}",
        ] {
            assert!(Request::parse(junk).is_err(), "{junk:?}");
        }
    }

    #[test]
    fn answers_round_trip() {
        let l = Local::parse(L).unwrap();
        let list = Answer::Bans(vec![Ban {
            local: l,
            at: 17,
            reason: "two words".into(),
        }]);
        for (req, ans) in [
            (Request::List, list),
            (Request::List, Answer::Bans(vec![])),
            (
                Request::Lookup(l),
                Answer::Found(Some("a@b.example".into())),
            ),
            (Request::Lookup(l), Answer::Found(None)),
            (Request::Unban(l), Answer::Changed(Change::Unchanged)),
        ] {
            let lines = answer_lines::<AnswerError>(&Ok(ans.clone()));
            let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
            assert_eq!(parse_answer(&req, &lines), Ok(ans));
        }
        let err = answer_lines::<&str>(&Err("a\nb"));
        assert_eq!(
            parse_answer(&Request::List, &[err[0].as_str()]),
            Err(AnswerError::Reported("a b".into()))
        );
        assert!(parse_answer(&Request::List, &["ban x"]).is_err());
    }
}

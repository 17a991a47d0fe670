//! `axrelay ban`, `unban` and `bans`: the ban list (SPEC §5, §7), through the
//! running relay or, when none answers, in the store directly.

use std::time::{Duration, UNIX_EPOCH};

use axrelay::admin::Change;
use axrelay::control::{Answer, Request};
use axrelay::logging;
use axrelay_proto::bans::record::reason_ok;

use super::operator::{pseudonym, Operator};
use super::{start, Status};
use crate::cli::{BanArgs, BansArgs, UnbanArgs};

/// Run `ban`; the status follows `--help`.
pub fn ban(args: &BanArgs) -> Status {
    if !reason_ok(&args.reason) {
        logging::fatal("--reason: one line of at most 256 bytes, without control characters");
        return Status::Config;
    }
    change(&args.operator, &args.pseudonym, |l| {
        Request::Ban(l, args.reason.clone())
    })
}

/// Run `unban`; the status follows `--help`.
pub fn unban(args: &UnbanArgs) -> Status {
    change(&args.operator, &args.pseudonym, Request::Unban)
}

fn change(
    op: &crate::cli::Operator,
    typed: &str,
    request: impl FnOnce(axrelay_proto::pseudonym::Local) -> Request,
) -> Status {
    let result = start(&op.common).and_then(|(settings, _)| {
        let mut operator = Operator::new(&settings, op.verbose)?;
        let domain = operator.hash().domain.clone();
        let local = pseudonym(typed, &domain).map_err(|e| {
            logging::fatal(e);
            Status::Config
        })?;
        let request = request(local);
        let banning = matches!(request, Request::Ban(..));
        let shown = format!("{local}@{domain}");
        match (operator.perform(&request)?, banning) {
            (Answer::Changed(Change::Done), true) => println!("{shown} banned"),
            (Answer::Changed(Change::Unchanged), true) => println!("{shown} was banned already"),
            (Answer::Changed(Change::Done), false) => println!("{shown} unbanned"),
            (Answer::Changed(Change::Unchanged), false) => println!("{shown} was not banned"),
            _ => {
                logging::fatal("an unexpected answer");
                return Err(Status::Failure);
            }
        }
        Ok(Status::Ok)
    });
    match result {
        Ok(status) | Err(status) => status,
    }
}

/// Run `bans`: one line per ban, `PSEUDONYM  WHEN  REASON`.
pub fn bans(args: &BansArgs) -> Status {
    let result = start(&args.operator.common).and_then(|(settings, _)| {
        let mut operator = Operator::new(&settings, args.operator.verbose)?;
        let domain = operator.hash().domain.clone();
        let Answer::Bans(bans) = operator.perform(&Request::List)? else {
            logging::fatal("an unexpected answer");
            return Err(Status::Failure);
        };
        for b in bans {
            println!("{}@{domain}  {}  {}", b.local, when(b.at), b.reason);
        }
        Ok(Status::Ok)
    });
    match result {
        Ok(status) | Err(status) => status,
    }
}

/// The last second RFC 3339 can show: 9999-12-31T23:59:59Z.
const LAST_SHOWN: u64 = 253_402_300_799;

/// `at` (Unix seconds) in UTC, or the number itself past year 9999, which
/// the calendar format cannot show (the record is anyone's to write in
/// clear).
fn when(at: u64) -> String {
    if at > LAST_SHOWN {
        return at.to_string();
    }
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(at)).to_string()
}

#[cfg(test)]
mod tests {
    use super::when;

    #[test]
    fn times_beyond_the_calendar_print_as_numbers() {
        assert_eq!(when(0), "1970-01-01T00:00:00Z");
        assert_eq!(when(1_767_323_045), "2026-01-02T03:04:05Z");
        assert_eq!(when(253_402_300_799), "9999-12-31T23:59:59Z");
        assert_eq!(when(253_402_300_800), "253402300800");
        assert_eq!(when(u64::MAX), u64::MAX.to_string());
    }
}

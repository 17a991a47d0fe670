//! `axrelay status`: the running relay's figures, read from its metrics
//! endpoint.

use std::time::Duration;

use axrelay::logging;
use axrelay_host::metrics::http::scrape;

use super::{start, Status};
use crate::cli::StatusArgs;

/// How long the relay may take to answer.
const TIMEOUT: Duration = Duration::from_secs(5);

/// Print the figures; the status follows `--help`.
pub fn status(args: &StatusArgs) -> Status {
    match try_status(args) {
        Ok(status) | Err(status) => status,
    }
}

fn try_status(args: &StatusArgs) -> Result<Status, Status> {
    let (settings, _) = start(&args.common)?;
    let path = settings.path().display();
    let addr = settings
        .metrics()
        .map_err(|e| {
            logging::fatal(e);
            Status::Config
        })?
        .ok_or_else(|| {
            logging::fatal(format!(
                "{path}: [metrics] listen: not set, so a running relay publishes no figures \
                 (set it, e.g. `listen = 127.0.0.1:9150`, and restart the relay)"
            ));
            Status::Config
        })?;
    let text = scrape(addr, TIMEOUT).map_err(|e| {
        logging::fatal(format!(
            "cannot read the relay's figures at http://{addr}/metrics: {e}; is `axrelay run` \
             running with {path}?"
        ));
        Status::Failure
    })?;
    print!("{}", summary(&text));
    Ok(Status::Ok)
}

/// One line per series, without the comments and the histogram's buckets;
/// the connection's state first.
fn summary(text: &str) -> String {
    let mut out = String::new();
    let state = text
        .lines()
        .filter_map(|l| l.strip_prefix("axrelay_connection_state{state=\""))
        .find_map(|l| l.strip_suffix("\"} 1"));
    out.push_str(&format!("state: {}\n", state.unwrap_or("unknown")));
    for line in text.lines() {
        let name = line.split(['{', ' ']).next().unwrap_or_default();
        if line.starts_with('#')
            || name.ends_with("_bucket")
            || name.ends_with("_created")
            || name == "axrelay_connection_state"
        {
            continue;
        }
        let line = line.strip_prefix("axrelay_").unwrap_or(line);
        out.push_str(line);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::summary;

    #[test]
    fn the_summary_keeps_the_figures_and_drops_the_rest() {
        let text = "# HELP axrelay_relayed Messages.\n# TYPE axrelay_relayed counter\n\
            axrelay_relayed_total 4\n\
            axrelay_connection_state{state=\"connecting\"} 0\n\
            axrelay_connection_state{state=\"online\"} 1\n\
            axrelay_store_latency_seconds_bucket{le=\"0.1\",op=\"get\"} 1\n\
            axrelay_store_latency_seconds_count{op=\"get\"} 1\n# EOF\n";
        assert_eq!(
            summary(text),
            "state: online\nrelayed_total 4\nstore_latency_seconds_count{op=\"get\"} 1\n"
        );
    }
}

//! docker's `--restart`: its parsing, and the decision its restart
//! manager makes when a container exits (moby's `restartmanager`): whether
//! to start it again, and after how long. The keeper process that acts on
//! it is `commands/keep.rs`.

use anyhow::{bail, Result};
use layerdb::RestartPolicy;
use std::time::Duration;

/// The first delay before a restart, doubled at each one after.
const FIRST_DELAY: Duration = Duration::from_millis(100);
/// The longest delay.
const LONGEST_DELAY: Duration = Duration::from_secs(60);
/// A run at least this long starts the delays over.
const STEADY_RUN: Duration = Duration::from_secs(10);

/// `--restart NAME[:COUNT]`, checked as docker checks it.
pub fn parse(given: &str) -> Result<RestartPolicy> {
    let (name, count) = match given.split_once(':') {
        Some(("", _)) => bail!("invalid restart policy format: no policy provided before colon"),
        Some((name, count)) => match count.parse::<i64>() {
            Ok(count) => (name, count),
            Err(_) => {
                bail!("invalid restart policy format: maximum retry count must be an integer")
            }
        },
        None => (given, 0),
    };
    match name {
        "no" | "always" | "unless-stopped" if count != 0 => {
            let mut msg = "invalid restart policy: maximum retry count can only be used with 'on-failure'".to_string();
            if count < 0 {
                msg.push_str(" and cannot be negative");
            }
            bail!(msg)
        }
        "on-failure" if count < 0 => {
            bail!("invalid restart policy: maximum retry count cannot be negative")
        }
        "no" | "always" | "unless-stopped" | "on-failure" => Ok(RestartPolicy {
            name: name.to_string(),
            maximum_retry_count: u32::try_from(count).unwrap_or(u32::MAX),
        }),
        other => bail!(
            "invalid restart policy: unknown policy '{other}'; use one of 'no', 'always', 'on-failure', or 'unless-stopped'"
        ),
    }
}

/// Whether the policy restarts anything at all.
pub fn restarts(policy: &RestartPolicy) -> bool {
    !matches!(policy.name.as_str(), "" | "no")
}

/// The keeper's memory between exits: the delay it last waited.
#[derive(Debug, Default)]
pub struct Backoff {
    delay: Duration,
}

impl Backoff {
    /// After an exit with `code` following a run of `ran`, with `restarts`
    /// made so far: the delay before the next start, or `None` when the
    /// policy says the container stays stopped. A container stopped by
    /// `stop`, `kill` or `rm -f` is never restarted; the keeper checks
    /// that before asking.
    pub fn next(
        &mut self,
        policy: &RestartPolicy,
        code: i32,
        restarts: u32,
        ran: Duration,
    ) -> Option<Duration> {
        if ran >= STEADY_RUN {
            self.delay = Duration::ZERO;
        }
        self.delay = match self.delay.is_zero() {
            true => FIRST_DELAY,
            false => (self.delay * 2).min(LONGEST_DELAY),
        };
        let restart = match policy.name.as_str() {
            "always" | "unless-stopped" => true,
            "on-failure" => {
                let max = policy.maximum_retry_count;
                code != 0 && (max == 0 || restarts < max)
            }
            _ => false,
        };
        restart.then_some(self.delay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(name: &str, max: u32) -> RestartPolicy {
        RestartPolicy {
            name: name.into(),
            maximum_retry_count: max,
        }
    }

    #[test]
    fn policies_parse_and_are_refused_in_dockers_words() {
        assert_eq!(parse("always").unwrap(), policy("always", 0));
        assert_eq!(parse("on-failure:3").unwrap(), policy("on-failure", 3));
        assert_eq!(
            parse("unless-stopped").unwrap(),
            policy("unless-stopped", 0)
        );
        assert_eq!(parse("no").unwrap(), policy("no", 0));
        let refused = |given: &str| parse(given).unwrap_err().to_string();
        assert_eq!(
            refused("always:2"),
            "invalid restart policy: maximum retry count can only be used with 'on-failure'"
        );
        assert!(refused("on-failure:-1").contains("cannot be negative"));
        assert!(refused("on-failure:x").contains("must be an integer"));
        assert!(refused(":3").contains("no policy provided before colon"));
        assert!(refused("sometimes").contains("unknown policy 'sometimes'"));
    }

    #[test]
    fn delays_double_to_a_minute_and_start_over_after_a_steady_run() {
        let mut b = Backoff::default();
        let always = policy("always", 0);
        let short = Duration::from_millis(5);
        let delays: Vec<u128> = (0..12)
            .map(|i| b.next(&always, 0, i, short).unwrap().as_millis())
            .collect();
        assert_eq!(&delays[..4], [100, 200, 400, 800]);
        assert_eq!(delays[11], 60_000);
        let after_steady = b.next(&always, 1, 12, Duration::from_secs(10)).unwrap();
        assert_eq!(after_steady, FIRST_DELAY);
    }

    #[test]
    fn on_failure_restarts_failures_up_to_its_count() {
        let mut b = Backoff::default();
        let short = Duration::ZERO;
        let twice = policy("on-failure", 2);
        assert!(b.next(&twice, 0, 0, short).is_none(), "a success");
        assert!(b.next(&twice, 1, 0, short).is_some());
        assert!(b.next(&twice, 1, 1, short).is_some());
        assert!(b.next(&twice, 1, 2, short).is_none(), "past its count");
        assert!(b.next(&policy("on-failure", 0), 1, 99, short).is_some());
        assert!(b.next(&policy("no", 0), 1, 0, short).is_none());
        assert!(b.next(&policy("always", 0), 0, 50, short).is_some());
    }
}

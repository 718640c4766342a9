//! docker's HEALTHCHECK: the probe an image's config or `run --health-*`
//! sets, and what its results make of a running container's health, as
//! moby's health monitor decides it: `starting` until a probe succeeds
//! (`healthy`) or `retries` probes in a row fail past the start period
//! (`unhealthy`), the last five probes kept. The probes are run by
//! `strata __health` (`commands/health.rs`); the state lives in the
//! container's `health.json`, which `ps` and `inspect` read.

use anyhow::{bail, Result};
use layerdb::RunConfig;
use serde::{Deserialize, Serialize};
use std::time::Duration;

const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_RETRIES: u32 = 3;
/// Probes kept in the log, and bytes of output kept of each (moby's).
const LOG_ENTRIES: usize = 5;
pub const OUTPUT_BYTES: usize = 4096;

/// The probe and its timing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Check {
    /// What runs in the container.
    pub argv: Vec<String>,
    pub interval: Duration,
    pub timeout: Duration,
    pub start_period: Duration,
    pub retries: u32,
}

impl Check {
    /// The config's check; `None` without one, or with `NONE`.
    pub fn of(config: &RunConfig) -> Option<Check> {
        let hc = config.healthcheck.as_ref()?;
        let test: Vec<String> = serde_json::from_value(hc.get("Test")?.clone()).ok()?;
        let argv = match test.split_first()? {
            (kind, rest) if kind == "CMD" && !rest.is_empty() => rest.to_vec(),
            (kind, [command]) if kind == "CMD-SHELL" => {
                vec!["/bin/sh".into(), "-c".into(), command.clone()]
            }
            _ => return None, // NONE, or nothing to run
        };
        // At least a millisecond, the least `run` and `commit` accept: an
        // image loaded from elsewhere may say 1 ns, which would probe
        // without pause, outside the container's CPU limit.
        let ns = |key: &str, default: Duration| match hc.get(key).and_then(|v| v.as_u64()) {
            Some(ns) if ns > 0 => Duration::from_nanos(ns).max(Duration::from_millis(1)),
            _ => default,
        };
        let retries = hc.get("Retries").and_then(|v| v.as_u64()).unwrap_or(0);
        Some(Check {
            argv,
            interval: ns("Interval", DEFAULT_INTERVAL),
            timeout: ns("Timeout", DEFAULT_TIMEOUT),
            start_period: ns("StartPeriod", Duration::ZERO),
            retries: match retries {
                0 => DEFAULT_RETRIES,
                n => u32::try_from(n).unwrap_or(u32::MAX),
            },
        })
    }
}

/// `run`'s `--health-*` flags, each given replacing its field of the
/// image's check.
#[derive(Debug, Default)]
pub struct Flags<'a> {
    pub cmd: Option<&'a str>,
    pub interval: Option<&'a str>,
    pub timeout: Option<&'a str>,
    pub start_period: Option<&'a str>,
    pub retries: Option<i64>,
    pub none: bool,
}

/// Applies `flags` to the config's check, with docker's refusals.
pub fn apply(config: &mut RunConfig, flags: &Flags<'_>) -> Result<()> {
    let durations = [
        ("Interval", "--health-interval", flags.interval),
        ("Timeout", "--health-timeout", flags.timeout),
        ("StartPeriod", "--health-start-period", flags.start_period),
    ];
    let any = flags.cmd.is_some()
        || flags.retries.is_some()
        || durations.iter().any(|(_, _, given)| given.is_some());
    if flags.none {
        if any {
            bail!("--no-healthcheck conflicts with --health-* options");
        }
        config.healthcheck = Some(serde_json::json!({ "Test": ["NONE"] }));
        return Ok(());
    }
    if !any {
        return Ok(());
    }
    let mut hc = config
        .healthcheck
        .take()
        .filter(serde_json::Value::is_object)
        .unwrap_or_else(|| serde_json::json!({}));
    if let Some(cmd) = flags.cmd {
        hc["Test"] = serde_json::json!(["CMD-SHELL", cmd]);
    }
    for (key, flag, given) in durations {
        if let Some(text) = given {
            let Some(ns) = crate::humanize::parse_go_duration(text) else {
                bail!("invalid argument \"{text}\" for \"{flag}\" flag: time: invalid duration \"{text}\"");
            };
            if ns != 0 && ns < 1_000_000 {
                bail!("{flag} cannot be less than 1ms");
            }
            hc[key] = serde_json::json!(ns);
        }
    }
    if let Some(retries) = flags.retries {
        if retries < 0 {
            bail!("--health-retries cannot be negative");
        }
        hc["Retries"] = serde_json::json!(retries);
    }
    config.healthcheck = Some(hc);
    Ok(())
}

/// One probe's result, as docker's `State.Health.Log` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Probe {
    pub start: String,
    pub end: String,
    pub exit_code: i32,
    pub output: String,
}

/// docker's `State.Health`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Health {
    pub status: String,
    pub failing_streak: u32,
    pub log: Vec<Probe>,
}

impl Health {
    pub fn starting() -> Health {
        Health {
            status: "starting".into(),
            failing_streak: 0,
            log: Vec::new(),
        }
    }

    /// After `probe`: a success makes the container healthy; a failure
    /// past the start period (or once it was healthy) adds to the streak,
    /// which makes it unhealthy at `retries`.
    pub fn record(&mut self, probe: Probe, in_start_period: bool, retries: u32) {
        if probe.exit_code == 0 {
            self.failing_streak = 0;
            self.status = "healthy".into();
        } else if !(self.status == "starting" && in_start_period) {
            self.failing_streak += 1;
            if self.failing_streak >= retries {
                self.status = "unhealthy".into();
            }
        }
        self.log.push(probe);
        if self.log.len() > LOG_ENTRIES {
            self.log.remove(0);
        }
    }

    /// What `ps` adds to a running container's status.
    pub fn shown(&self) -> &'static str {
        match self.status.as_str() {
            "healthy" => "healthy",
            "unhealthy" => "unhealthy",
            _ => "health: starting",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(code: i32) -> Probe {
        Probe {
            start: String::new(),
            end: String::new(),
            exit_code: code,
            output: String::new(),
        }
    }

    #[test]
    fn failures_count_after_the_start_period_and_a_success_heals() {
        let mut h = Health::starting();
        h.record(probe(1), true, 2);
        assert_eq!((h.status.as_str(), h.failing_streak), ("starting", 0));
        h.record(probe(1), false, 2);
        assert_eq!((h.status.as_str(), h.failing_streak), ("starting", 1));
        h.record(probe(1), false, 2);
        assert_eq!(h.status, "unhealthy");
        h.record(probe(0), false, 2);
        assert_eq!((h.status.as_str(), h.failing_streak), ("healthy", 0));
        // Once healthy, the start period no longer shields a failure.
        h.record(probe(1), true, 2);
        assert_eq!(h.failing_streak, 1);
        for _ in 0..5 {
            h.record(probe(0), false, 2);
        }
        assert_eq!(h.log.len(), 5);
    }

    #[test]
    fn an_images_interval_under_a_millisecond_is_a_millisecond() {
        let config = RunConfig {
            healthcheck: Some(serde_json::json!({
                "Test": ["CMD", "check"], "Interval": 1, "Timeout": 1
            })),
            ..RunConfig::default()
        };
        let check = Check::of(&config).unwrap();
        assert_eq!(check.interval, Duration::from_millis(1));
        assert_eq!(check.timeout, Duration::from_millis(1));
    }

    #[test]
    fn flags_replace_the_images_fields_and_none_turns_it_off() {
        let mut config = RunConfig {
            healthcheck: Some(serde_json::json!({
                "Test": ["CMD", "check"], "Interval": 5_000_000_000u64, "Retries": 7
            })),
            ..RunConfig::default()
        };
        let flags = Flags {
            cmd: Some("curl -f localhost"),
            timeout: Some("2s"),
            ..Flags::default()
        };
        apply(&mut config, &flags).unwrap();
        let check = Check::of(&config).unwrap();
        assert_eq!(check.argv, ["/bin/sh", "-c", "curl -f localhost"]);
        assert_eq!(check.interval, Duration::from_secs(5));
        assert_eq!(check.timeout, Duration::from_secs(2));
        assert_eq!(check.retries, 7);
        let none = Flags {
            none: true,
            ..Flags::default()
        };
        apply(&mut config, &none).unwrap();
        assert_eq!(Check::of(&config), None);
        let both = Flags {
            none: true,
            cmd: Some("x"),
            ..Flags::default()
        };
        assert!(apply(&mut config, &both).is_err());
        let fast = Flags {
            interval: Some("10us"),
            ..Flags::default()
        };
        assert!(apply(&mut config, &fast).is_err());
    }
}

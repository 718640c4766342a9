//! `--memory`, `--memory-swap`, `--cpus` and `--pids-limit` as docker
//! reads and checks them, with docker's messages for bad values.

use anyhow::bail;
use layerdb::Resources;

/// The CFS period docker uses, in microseconds.
pub const CFS_PERIOD_US: i64 = 100_000;
/// docker's smallest memory limit: 6 MiB.
const MIN_MEMORY: i64 = 6 * 1024 * 1024;
/// memory + swap, as a multiple of memory, when `--memory-swap` is unset.
const MEMORY_SWAP_FACTOR: i64 = 2;
const NANOS_PER_CPU: i64 = 1_000_000_000;

/// docker's `-m`: a size as [`crate::humanize::parse_size`] reads it.
pub fn parse_memory(value: &str) -> anyhow::Result<i64> {
    crate::humanize::parse_size(value, "-m, --memory")
}

/// docker's `--memory-swap`: a size as for `--memory`, or -1 for no limit
/// on swap.
pub fn parse_memory_swap(value: &str) -> anyhow::Result<i64> {
    match value {
        "-1" => Ok(-1),
        _ => crate::humanize::parse_size(value, "--memory-swap"),
    }
}

/// docker's `--cpus`: a decimal number of CPUs, kept as billionths.
pub fn parse_cpus(value: &str) -> anyhow::Result<i64> {
    let bad =
        |why: &str| anyhow::anyhow!("invalid argument \"{value}\" for \"--cpus\" flag: {why}");
    let not_rational = || bad(&format!("failed to parse {value} as a rational number"));
    let (whole, fraction) = value.split_once('.').unwrap_or((value, ""));
    let digits = |s: &str| s.chars().all(|c| c.is_ascii_digit());
    if (whole.is_empty() && fraction.is_empty()) || !digits(whole) || !digits(fraction) {
        return Err(not_rational());
    }
    let fraction = fraction.trim_end_matches('0');
    if fraction.len() > 9 {
        return Err(bad("value is too precise"));
    }
    let whole: i64 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| not_rational())?
    };
    let fraction_nanos: i64 = format!("{fraction:0<9}")
        .parse()
        .map_err(|_| not_rational())?;
    whole
        .checked_mul(NANOS_PER_CPU)
        .and_then(|n| n.checked_add(fraction_nanos))
        .ok_or_else(not_rational)
}

/// Memory plus swap as docker shows and applies it: `--memory-swap` as
/// given, twice the memory when only `--memory` was, -1 for no limit on
/// swap, and 0 when neither limits anything.
pub fn memory_and_swap(resources: &Resources) -> i64 {
    match (resources.memory, resources.memory_swap) {
        // Without -m, validate() let only 0 or -1 through: shown as given.
        (0, swap) => swap,
        (memory, 0) => memory.saturating_mul(MEMORY_SWAP_FACTOR),
        (_, swap) => swap,
    }
}

/// The most a pids cgroup takes (the kernel's PID_MAX_LIMIT): more is
/// refused by the kernel only when the container starts.
const PIDS_MAX: i64 = 4_194_304;

/// docker's `--pids-limit`: an integer; 0 and -1 mean no limit.
pub fn parse_pids_limit(value: &str) -> anyhow::Result<i64> {
    match value.parse::<i64>() {
        Ok(limit) if limit <= 0 => Ok(0),
        Ok(limit) if limit > PIDS_MAX => {
            bail!("invalid --pids-limit {limit}: the kernel takes at most {PIDS_MAX}")
        }
        Ok(limit) => Ok(limit),
        Err(_) => bail!(
            "invalid argument \"{value}\" for \"--pids-limit\" flag: strconv.ParseInt: parsing \"{value}\": invalid syntax"
        ),
    }
}

/// The checks docker's daemon makes before it creates the container.
pub fn validate(resources: &Resources, cpus_on_host: usize) -> anyhow::Result<()> {
    if resources.memory != 0 && resources.memory < MIN_MEMORY {
        bail!("Minimum memory limit allowed is 6MB");
    }
    if resources.memory == 0 && resources.memory_swap > 0 {
        bail!("You should always set the Memory limit when using Memoryswap limit, see usage");
    }
    if resources.memory_swap > 0 && resources.memory_swap < resources.memory {
        bail!("Minimum memoryswap limit should be larger than memory limit, see usage");
    }
    let host = i64::try_from(cpus_on_host).unwrap_or(i64::MAX);
    if resources.nano_cpus < 0 || resources.nano_cpus > host.saturating_mul(NANOS_PER_CPU) {
        bail!("range of CPUs is from 0.01 to {host}.00, as there are only {host} CPUs available");
    }
    // The kernel's smallest CFS quota is 1 ms of each 100 ms period.
    if resources.nano_cpus > 0 && cfs_quota_us(resources.nano_cpus) < 1000 {
        bail!("range of CPUs is from 0.01 to {host}.00, as there are only {host} CPUs available");
    }
    Ok(())
}

/// The CFS quota for `nano_cpus` over [`CFS_PERIOD_US`].
pub fn cfs_quota_us(nano_cpus: i64) -> i64 {
    nano_cpus.saturating_mul(CFS_PERIOD_US) / NANOS_PER_CPU
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_takes_dockers_units() {
        assert_eq!(parse_memory("512").unwrap(), 512);
        assert_eq!(parse_memory("64k").unwrap(), 64 << 10);
        assert_eq!(parse_memory("64m").unwrap(), 64 << 20);
        assert_eq!(parse_memory("64M").unwrap(), 64 << 20);
        assert_eq!(parse_memory("1g").unwrap(), 1 << 30);
        assert_eq!(parse_memory("1.5g").unwrap(), 3 << 29);
        assert_eq!(parse_memory("10mb").unwrap(), 10 << 20);
        assert_eq!(parse_memory("2GiB").unwrap(), 2 << 30);
        assert_eq!(parse_memory("7b").unwrap(), 7);
        for bad in ["", "x", "10x", "-1", "m", "1.2.3m"] {
            let err = parse_memory(bad).expect_err(bad).to_string();
            assert!(err.contains("invalid size"), "{bad}: {err}");
        }
    }

    #[test]
    fn cpus_are_kept_as_billionths() {
        assert_eq!(parse_cpus("1").unwrap(), 1_000_000_000);
        assert_eq!(parse_cpus("0.5").unwrap(), 500_000_000);
        assert_eq!(parse_cpus(".25").unwrap(), 250_000_000);
        assert_eq!(parse_cpus("1.500").unwrap(), 1_500_000_000);
        assert!(parse_cpus("abc")
            .unwrap_err()
            .to_string()
            .contains("rational number"));
        assert!(parse_cpus("1.0000000001")
            .unwrap_err()
            .to_string()
            .contains("too precise"));
        assert!(parse_cpus("-1").is_err());
        assert_eq!(cfs_quota_us(1_500_000_000), 150_000);
    }

    #[test]
    fn pids_limit_of_zero_or_less_is_no_limit() {
        assert_eq!(parse_pids_limit("100").unwrap(), 100);
        assert_eq!(parse_pids_limit("-1").unwrap(), 0);
        assert_eq!(parse_pids_limit("0").unwrap(), 0);
        assert_eq!(parse_pids_limit("4194304").unwrap(), 4_194_304);
        assert!(parse_pids_limit("99999999").is_err());
        assert!(parse_pids_limit("lots")
            .unwrap_err()
            .to_string()
            .contains("invalid syntax"));
    }

    #[test]
    fn docker_refuses_tiny_memory_and_more_cpus_than_the_host_has() {
        let with = |memory, nano_cpus| Resources {
            memory,
            nano_cpus,
            ..Resources::default()
        };
        assert!(validate(&with(4 << 20, 0), 2)
            .unwrap_err()
            .to_string()
            .contains("6MB"));
        assert!(validate(&with(6 << 20, 0), 2).is_ok());
        let err = validate(&with(0, 3_000_000_000), 2)
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "range of CPUs is from 0.01 to 2.00, as there are only 2 CPUs available"
        );
        assert!(validate(&with(0, 5_000_000), 2).is_err());
        assert!(validate(&with(0, 10_000_000), 2).is_ok());
    }
}

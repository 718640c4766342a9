//! docker's `--filter KEY=VALUE` for `ps`, `images` and the prunes: the
//! values given for one key are alternatives (any may match), except
//! `label`, whose values must all match; different keys must all match.

use anyhow::{bail, Result};
use std::collections::BTreeMap;

/// The `--filter` flags of one command, checked against the keys it takes.
#[derive(Default)]
pub struct Filters(BTreeMap<String, Vec<String>>);

impl Filters {
    /// Parses `KEY=VALUE` flags; a key the command does not take, or a flag
    /// without `=`, is refused as docker refuses it.
    pub fn parse(given: &[String], keys: &[&str]) -> Result<Filters> {
        let mut filters = BTreeMap::<String, Vec<String>>::new();
        for flag in given {
            let Some((key, value)) = flag.split_once('=') else {
                bail!("bad format of filter (expected name=value)");
            };
            let key = key.trim().to_lowercase();
            if !keys.contains(&key.as_str()) {
                bail!("invalid filter '{key}'");
            }
            filters.entry(key).or_default().push(value.to_string());
        }
        Ok(Filters(filters))
    }

    /// The values given for `key`.
    pub fn values(&self, key: &str) -> &[String] {
        self.0.get(key).map_or(&[], Vec::as_slice)
    }

    /// Whether `key` was not given or one of its values passes `test`.
    pub fn any(&self, key: &str, test: impl Fn(&str) -> bool) -> bool {
        let values = self.values(key);
        values.is_empty() || values.iter().any(|v| test(v))
    }

    /// docker's `Match`: a value equal to `source`, or a regular
    /// expression found in it (unanchored); a value that is no regular
    /// expression matches only itself.
    pub fn matches(&self, key: &str, source: &str) -> bool {
        self.any(key, |v| {
            v == source || regex::Regex::new(v).is_ok_and(|re| re.is_match(source))
        })
    }

    /// The creation times `since=` and `before=` leave, each naming a
    /// container or an image whose time `created_of` gives (refusing a
    /// name that is nothing, as docker does).
    pub fn created_span(&self, created_of: impl Fn(&str) -> Result<i64>) -> Result<CreatedSpan> {
        let bound = |key: &str| {
            self.values(key)
                .last()
                .map(|name| created_of(name))
                .transpose()
        };
        Ok(CreatedSpan {
            after: bound("since")?,
            before: bound("before")?,
        })
    }

    /// Whether every `label=KEY` or `label=KEY=VALUE` holds for `labels`.
    pub fn labels_match(&self, labels: &BTreeMap<String, String>) -> bool {
        self.values("label").iter().all(|v| label_holds(v, labels))
    }
}

/// A prune's `--filter`s: `until=` (what was made before a time: RFC
/// 3339, Unix seconds or a duration back from now), `label=KEY[=VALUE]`
/// and `label!=KEY[=VALUE]` (what has, or has not, the label).
pub struct PruneFilter {
    filters: Filters,
    until: Option<i64>,
}

impl PruneFilter {
    pub fn parse(given: &[String]) -> Result<PruneFilter> {
        let filters = Filters::parse(given, &["until", "label", "label!"])?;
        let now = crate::clock::now_ns();
        let until = (filters.values("until").last())
            .map(|v| crate::humanize::time_bound(v, now))
            .transpose()?;
        Ok(PruneFilter { filters, until })
    }

    /// Whether what was made at `created` with `labels` may be pruned.
    pub fn admits(&self, created: Option<i64>, labels: &BTreeMap<String, String>) -> bool {
        let old_enough = self
            .until
            .is_none_or(|until| created.is_some_and(|c| c < until));
        let unwanted = self
            .filters
            .values("label!")
            .iter()
            .any(|v| label_holds(v, labels));
        old_enough && self.filters.labels_match(labels) && !unwanted
    }
}

/// Whether `KEY` or `KEY=VALUE` holds for `labels`.
fn label_holds(filter: &str, labels: &BTreeMap<String, String>) -> bool {
    match filter.split_once('=') {
        Some((k, want)) => labels.get(k).is_some_and(|have| have == want),
        None => labels.contains_key(filter),
    }
}

/// The span of creation times `since=` and `before=` leave, open at both
/// ends as docker's.
pub struct CreatedSpan {
    after: Option<i64>,
    before: Option<i64>,
}

impl CreatedSpan {
    /// Whether `created` falls in it; a time not known only when neither
    /// bound was given.
    pub fn holds(&self, created: Option<i64>) -> bool {
        if self.after.is_none() && self.before.is_none() {
            return true;
        }
        created.is_some_and(|t| {
            self.after.is_none_or(|after| after < t) && self.before.is_none_or(|before| t < before)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filters(given: &[&str]) -> Filters {
        let given: Vec<String> = given.iter().map(|s| s.to_string()).collect();
        Filters::parse(&given, &["name", "status", "label"]).unwrap()
    }

    #[test]
    fn one_keys_values_are_alternatives_and_names_match_as_regular_expressions() {
        let f = filters(&["name=^/web", "name=db$", "status=running"]);
        assert!(f.matches("name", "/web-1"));
        assert!(f.matches("name", "/main-db"));
        assert!(!f.matches("name", "/cache"));
        assert!(f.any("status", |s| s == "running"));
        assert!(
            filters(&[]).matches("name", "/anything"),
            "no filter, no limit"
        );
    }

    #[test]
    fn every_label_filter_must_hold() {
        let f = filters(&["label=tier", "label=env=prod"]);
        let mut labels = BTreeMap::new();
        labels.insert("tier".to_string(), "web".to_string());
        assert!(!f.labels_match(&labels));
        labels.insert("env".to_string(), "prod".to_string());
        assert!(f.labels_match(&labels));
    }

    #[test]
    fn an_unknown_key_or_a_flag_without_a_value_is_refused() {
        let bad = |given: &str| {
            Filters::parse(&[given.to_string()], &["name"])
                .err()
                .unwrap()
        };
        assert_eq!(bad("nosuch=1").to_string(), "invalid filter 'nosuch'");
        assert!(bad("name").to_string().contains("expected name=value"));
    }
}

//! Docker's seccomp profile format (what `--security-opt seccomp=FILE`
//! reads, and what moby's profiles/seccomp/default.json is written in):
//! a default action, the architectures the filter covers, and rules that
//! each name syscalls, an action, optional argument conditions, and
//! conditions on the container (capabilities, architecture, kernel
//! version) under which the rule is included or left out.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Profile {
    pub default_action: String,
    /// The errno of an `SCMP_ACT_ERRNO` default action (EPERM when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_errno_ret: Option<u32>,
    /// Architectures by their libseccomp names (`SCMP_ARCH_X86_64`); the
    /// older alternative to `arch_map`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub architectures: Vec<String>,
    /// For each native architecture, the ones its processes may also use
    /// (x86 and x32 on x86_64): the filter covers the native one's entry.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub arch_map: Vec<ArchMap>,
    #[serde(default)]
    pub syscalls: Vec<Rule>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ArchMap {
    pub architecture: String,
    #[serde(default)]
    pub sub_architectures: Option<Vec<String>>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rule {
    #[serde(default)]
    pub names: Vec<String>,
    /// The oldest format named one syscall per rule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub action: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errno_ret: Option<u32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<Arg>,
    #[serde(default)]
    pub includes: Filter,
    #[serde(default)]
    pub excludes: Filter,
}

/// A condition on one syscall argument. For `SCMP_CMP_MASKED_EQ`, `value`
/// is the mask and `value_two` what the masked argument must equal.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Arg {
    pub index: u32,
    pub value: u64,
    #[serde(default)]
    pub value_two: u64,
    pub op: String,
}

/// When a rule applies: `includes` needs all of its capabilities, the
/// native architecture among its arches and at least its kernel; a rule
/// is left out when any part of its `excludes` holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Filter {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub caps: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub arches: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_kernel: Option<String>,
}

impl Rule {
    /// Every syscall the rule names, in either format.
    pub fn all_names(&self) -> impl Iterator<Item = &str> {
        self.name.iter().chain(&self.names).map(String::as_str)
    }
}

//! `strata logout [REGISTRY]`: forgets the credentials login stored.

use super::login::{registry_domain, shown};
use crate::registry::credentials;
use anyhow::Result;

pub fn logout(registry: Option<&str>) -> Result<i32> {
    let domain = registry_domain(registry)?;
    if credentials::remove(&domain)? {
        outln!("Removing login credentials for {}", shown(&domain))?;
    } else {
        outln!("Not logged in to {}", shown(&domain))?;
    }
    Ok(0)
}

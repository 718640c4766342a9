//! How a mount shows the union to the kernel, as fuse-overlayfs's options
//! define it: owners translated or squashed (`uidmapping`, `gidmapping`,
//! `squash_to_root`, `squash_to_uid`, `squash_to_gid`), directories with a
//! link count of 1 (`static_nlink`), no extended attributes (`noxattrs`),
//! and syncs skipped (`fsync=0`, `volatile`). The union itself keeps the
//! owners as stored; the adapter translates at the FUSE boundary.

/// One range of an id mapping: ids `stored..stored+len` as the layers hold
/// them show as `shown..shown+len` (fuse-overlayfs's `ID:MAPPED-ID:LEN`;
/// containers-storage writes `ContainerID:HostID:Size`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IdRange {
    /// First id of the range as the layers store it.
    pub stored: u32,
    /// The id `stored` is shown as.
    pub shown: u32,
    /// Number of ids in the range.
    pub len: u32,
}

/// The id the kernel uses for an id the mapping cannot show or store
/// (`/proc/sys/kernel/overflowuid`, 65534 everywhere in practice).
pub const OVERFLOW_ID: u32 = 65534;

/// Translation of one kind of id (users or groups).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IdMap {
    /// Empty: ids show as stored.
    pub ranges: Vec<IdRange>,
    /// Every file shows as owned by this id (squash_to_*).
    pub squash: Option<u32>,
}

impl IdMap {
    /// Parses `A:B:N[:A:B:N...]` (ranges separated by `:` or `,`).
    pub fn parse_ranges(s: &str) -> Result<Vec<IdRange>, String> {
        let nums: Vec<u32> = s
            .split([':', ','])
            .filter(|p| !p.is_empty())
            .map(|p| p.parse::<u32>())
            .collect::<Result<_, _>>()
            .map_err(|_| format!("invalid id mapping {s:?}: want ID:MAPPED-ID:LEN[:...]"))?;
        if nums.is_empty() || !nums.len().is_multiple_of(3) {
            return Err(format!(
                "invalid id mapping {s:?}: want ID:MAPPED-ID:LEN[:...]"
            ));
        }
        Ok(nums
            .chunks(3)
            .map(|c| IdRange {
                stored: c[0],
                shown: c[1],
                len: c[2],
            })
            .collect())
    }

    /// The id the kernel sees for a stored id.
    pub fn shown(&self, stored: u32) -> u32 {
        if let Some(id) = self.squash {
            return id;
        }
        if self.ranges.is_empty() {
            return stored;
        }
        self.ranges
            .iter()
            .find(|r| stored >= r.stored && stored - r.stored < r.len)
            .map_or(OVERFLOW_ID, |r| r.shown + (stored - r.stored))
    }

    /// The id stored for an id the kernel names (a caller, a chown).
    pub fn stored(&self, shown: u32) -> u32 {
        self.mapped(shown).unwrap_or(OVERFLOW_ID)
    }

    /// The id stored for `shown`, or `None` where the mapping does not
    /// cover it: such a caller is no file's owner and in no file's group,
    /// though what it makes is stored as the overflow id.
    pub fn mapped(&self, shown: u32) -> Option<u32> {
        if self.ranges.is_empty() {
            return Some(shown);
        }
        self.ranges
            .iter()
            .find(|r| shown >= r.shown && shown - r.shown < r.len)
            .map(|r| r.stored + (shown - r.shown))
    }

    fn is_identity(&self) -> bool {
        self.ranges.is_empty() && self.squash.is_none()
    }
}

/// See the module documentation; the default shows the union as it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct View {
    /// How stored uids are shown.
    pub uids: IdMap,
    /// How stored gids are shown.
    pub gids: IdMap,
    /// Directories report one link (fuse-overlayfs's `static_nlink`).
    pub static_nlink: bool,
    /// Extended attributes are offered (false: fuse-overlayfs's `noxattrs=1`).
    pub xattrs: bool,
    /// fsync reaches the host (false: `fsync=0` or `volatile`).
    pub fsync: bool,
}

impl Default for View {
    fn default() -> View {
        View {
            uids: IdMap::default(),
            gids: IdMap::default(),
            static_nlink: false,
            xattrs: true,
            fsync: true,
        }
    }
}

impl View {
    /// True when owners pass unchanged both ways.
    pub fn maps_ids(&self) -> bool {
        !(self.uids.is_identity() && self.gids.is_identity())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapped_ids_translate_both_ways_and_unmapped_ones_overflow() {
        let m = IdMap {
            ranges: IdMap::parse_ranges("0:1000:1:1:110000:65536").expect("valid"),
            squash: None,
        };
        assert_eq!((m.shown(0), m.shown(1), m.shown(2)), (1000, 110000, 110001));
        assert_eq!((m.stored(1000), m.stored(110001)), (0, 2));
        assert_eq!((m.shown(70000), m.stored(5)), (OVERFLOW_ID, OVERFLOW_ID));
        assert!(IdMap::parse_ranges("0:1000").is_err());
        assert!(IdMap::parse_ranges("a:b:c").is_err());
    }

    #[test]
    fn squashing_shows_one_owner_but_stores_the_caller() {
        let m = IdMap {
            ranges: Vec::new(),
            squash: Some(0),
        };
        assert_eq!((m.shown(1000), m.stored(1000)), (0, 1000));
    }
}

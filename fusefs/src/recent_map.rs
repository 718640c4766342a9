//! A map bounded in size that keeps what was used last: two generations.
//!
//! New entries go to the young map. When it is full it becomes the old
//! one and the previous old one is dropped whole; an entry found in the
//! old map moves back to the young one. So an entry lives at least until
//! half the bound's worth of others has come after it (a walk's next
//! directory, read ahead a moment before the request for it, is still
//! there however large the tree), memory stays under the bound (plus the
//! one entry being added), and no entry carries an age or a list link.
//! Clearing the whole map at the bound, as before, threw away the entry
//! about to be used each time a walk of a tree past the bound crossed it.

use std::collections::HashMap;

/// Entries keyed by a layer path, each weighing what the caller says (a
/// listing its children, a node one).
pub struct RecentMap<V> {
    young: HashMap<Vec<u8>, V>,
    old: HashMap<Vec<u8>, V>,
    /// Weight held in `young`.
    young_weight: usize,
    /// Weight a generation holds before it ages: half the bound, as two
    /// generations are kept.
    generation: usize,
}

/// Weight of an entry: what the caller says, the key included (an empty
/// listing still costs its key).
pub trait Weigh {
    fn weight(&self) -> usize;
}

impl<V: Weigh> RecentMap<V> {
    /// A map holding about `bound` weight at most (the entries of the two
    /// generations together).
    pub fn new(bound: usize) -> RecentMap<V> {
        RecentMap {
            young: HashMap::new(),
            old: HashMap::new(),
            young_weight: 0,
            generation: (bound / 2).max(1),
        }
    }

    /// The entry for `key`; one found in the old generation is made young
    /// again.
    pub fn get(&mut self, key: &[u8]) -> Option<&V> {
        if !self.young.contains_key(key) {
            let v = self.old.remove(key)?;
            self.insert(key.to_vec(), v);
        }
        self.young.get(key)
    }

    pub fn insert(&mut self, key: Vec<u8>, value: V) {
        let weight = value.weight() + 1;
        if let Some(before) = self.young.remove(&key) {
            self.young_weight -= before.weight() + 1;
        }
        if self.young_weight + weight > self.generation && !self.young.is_empty() {
            self.old = std::mem::take(&mut self.young);
            self.young_weight = 0;
        }
        // Not in both: a stale old copy would come back after this one aged.
        self.old.remove(&key);
        self.young_weight += weight;
        self.young.insert(key, value);
    }

    /// Entries held, both generations.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.young.len() + self.old.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl Weigh for u32 {
        fn weight(&self) -> usize {
            0
        }
    }

    #[test]
    fn an_entry_outlives_half_the_bound_of_newer_ones_and_memory_stays_bounded() {
        let mut m = RecentMap::<u32>::new(20);
        m.insert(b"first".to_vec(), 1);
        for i in 0..9u32 {
            m.insert(i.to_be_bytes().to_vec(), i);
        }
        assert_eq!(m.get(b"first"), Some(&1), "nine newer entries later");
        for i in 100..1000u32 {
            m.insert(i.to_be_bytes().to_vec(), i);
            assert!(m.len() <= 20, "{} entries held", m.len());
        }
        assert_eq!(m.get(b"first"), None, "dropped once old enough");
        assert_eq!(m.get(&999u32.to_be_bytes()), Some(&999));
    }

    #[test]
    fn an_entry_used_again_is_kept_young() {
        let mut m = RecentMap::<u32>::new(8);
        m.insert(b"kept".to_vec(), 7);
        for i in 0..100u32 {
            m.insert(i.to_be_bytes().to_vec(), i);
            assert_eq!(m.get(b"kept"), Some(&7), "after {i}");
        }
    }
}

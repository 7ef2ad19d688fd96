//! A bounded cache of verified hash blocks, evicted with the CLOCK algorithm.
//!
//! Only blocks whose digest matched their parent go in, so a cached block is always a verified copy; a
//! block changed on disk after it was cached is not seen until it is evicted, as with the kernel's dm-bufio.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

struct Slot {
    block: u64,
    bytes: Arc<[u8]>,
    referenced: bool,
}

struct Inner {
    slots: Vec<Slot>,
    index: HashMap<u64, usize>,
    hand: usize,
}

/// Verified hash blocks by absolute block number, at most `capacity` of them.
pub(crate) struct HashCache {
    capacity: usize,
    inner: Mutex<Inner>,
}

impl HashCache {
    /// A cache holding at most `capacity` blocks (0 disables caching).
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            capacity,
            inner: Mutex::new(Inner {
                slots: Vec::new(),
                index: HashMap::new(),
                hand: 0,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The verified bytes of `block`, if cached.
    pub(crate) fn get(&self, block: u64) -> Option<Arc<[u8]>> {
        let mut inner = self.lock();
        let slot = *inner.index.get(&block)?;
        let s = &mut inner.slots[slot];
        s.referenced = true;
        Some(s.bytes.clone())
    }

    /// Caches the verified bytes of `block`, evicting another block if full.
    pub(crate) fn insert(&self, block: u64, bytes: Arc<[u8]>) {
        if self.capacity == 0 {
            return;
        }
        let mut inner = self.lock();
        if inner.index.contains_key(&block) {
            return;
        }
        if inner.slots.len() < self.capacity {
            let at = inner.slots.len();
            inner.slots.push(Slot {
                block,
                bytes,
                referenced: false,
            });
            inner.index.insert(block, at);
            return;
        }
        loop {
            let hand = inner.hand;
            inner.hand = (hand + 1) % self.capacity;
            if inner.slots[hand].referenced {
                inner.slots[hand].referenced = false;
                continue;
            }
            let old = inner.slots[hand].block;
            inner.index.remove(&old);
            inner.slots[hand] = Slot {
                block,
                bytes,
                referenced: false,
            };
            inner.index.insert(block, hand);
            return;
        }
    }

    /// Number of blocks cached.
    pub(crate) fn len(&self) -> usize {
        self.lock().slots.len()
    }

    /// Drops every cached block.
    pub(crate) fn clear(&self) {
        let mut inner = self.lock();
        inner.slots.clear();
        inner.index.clear();
        inner.hand = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stays_within_capacity_and_keeps_recently_used_blocks() {
        let cache = HashCache::new(2);
        let bytes: Arc<[u8]> = Arc::from(vec![1u8; 4]);
        cache.insert(1, bytes.clone());
        cache.insert(2, bytes.clone());
        assert!(cache.get(1).is_some());
        cache.insert(3, bytes.clone());
        assert_eq!(cache.len(), 2);
        assert!(cache.get(1).is_some(), "referenced block survives one sweep");
        assert!(cache.get(2).is_none());
        cache.clear();
        assert!(cache.get(1).is_none());
        let off = HashCache::new(0);
        off.insert(1, bytes);
        assert!(off.get(1).is_none());
    }
}

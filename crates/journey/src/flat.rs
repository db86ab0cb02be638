//! An open-addressing hash table for the engine's indexes: keys are already well-mixed 64-bit
//! hashes, each slot holds key and value side by side, so a lookup costs one cache line where a
//! general-purpose table reads its control bytes and its slot from two places. The slot of a key
//! can be prefetched before the lookup, so that its miss overlaps other work.
//!
//! Linear probing, at most 3/4 full, doubling. Key 0 marks an empty slot (a key that hashes to 0
//! is stored as 1). Iteration order is the slot order: deterministic for a given history of
//! operations, like everything in the engine.

/// A map from well-mixed `u64` keys to small `Copy` values.
pub(crate) struct FlatMap<V: Copy> {
    slots: Vec<(u64, V)>,
    len: usize,
}

impl<V: Copy + Default> Default for FlatMap<V> {
    fn default() -> Self {
        FlatMap { slots: Vec::new(), len: 0 }
    }
}

#[inline]
fn fix(key: u64) -> u64 {
    if key == 0 { 1 } else { key }
}

impl<V: Copy + Default> FlatMap<V> {
    pub fn len(&self) -> usize {
        self.len
    }

    /// Heap bytes held.
    pub fn heap_bytes(&self) -> usize {
        self.slots.capacity() * std::mem::size_of::<(u64, V)>()
    }

    #[inline]
    fn mask(&self) -> usize {
        self.slots.len().wrapping_sub(1)
    }

    /// The slot holding `key`, or the empty slot where it would go.
    #[inline]
    fn find(&self, key: u64) -> usize {
        let mask = self.mask();
        let mut i = (key as usize) & mask;
        loop {
            let k = self.slots[i].0;
            if k == key || k == 0 {
                return i;
            }
            i = (i + 1) & mask;
        }
    }

    pub fn get(&self, key: u64) -> Option<V> {
        if self.slots.is_empty() {
            return None;
        }
        let key = fix(key);
        let (k, v) = self.slots[self.find(key)];
        (k == key).then_some(v)
    }

    pub fn contains(&self, key: u64) -> bool {
        self.get(key).is_some()
    }

    /// Inserts or replaces; returns the previous value.
    pub fn insert(&mut self, key: u64, value: V) -> Option<V> {
        self.update(key, |_| value)
    }

    /// Sets the value of `key` to `f(previous)`; returns the previous value.
    #[inline]
    pub fn update(&mut self, key: u64, f: impl FnOnce(Option<V>) -> V) -> Option<V> {
        if (self.len + 1) * 4 > self.slots.len() * 3 {
            self.grow();
        }
        let key = fix(key);
        let i = self.find(key);
        let slot = &mut self.slots[i];
        if slot.0 == key {
            let old = slot.1;
            slot.1 = f(Some(old));
            Some(old)
        } else {
            *slot = (key, f(None));
            self.len += 1;
            None
        }
    }

    /// Empties the map and gives it `slots` slots (a power of two), reusing its memory when it
    /// has that many already: a successor generation neither regrows nor faults in fresh pages.
    pub fn clear_to(&mut self, slots: usize) {
        if self.slots.len() == slots {
            self.slots.fill((0, V::default()));
        } else {
            self.slots = vec![(0, V::default()); slots];
        }
        self.len = 0;
    }

    /// The number of slots (a power of two, or 0).
    pub fn slot_count(&self) -> usize {
        self.slots.len()
    }

    fn grow(&mut self) {
        let capacity = (self.slots.len() * 2).max(16);
        let old = std::mem::replace(&mut self.slots, vec![(0, V::default()); capacity]);
        for (k, v) in old {
            if k != 0 {
                let i = self.find(k);
                self.slots[i] = (k, v);
            }
        }
    }

    /// Asks the processor to fetch the slot of `key` into cache ahead of a lookup.
    #[inline]
    pub fn prefetch(&self, key: u64) {
        if self.slots.is_empty() {
            return;
        }
        prefetch(&self.slots[(fix(key) as usize) & self.mask()]);
    }
}

/// An index from hashed keys to instance numbers that keeps only 32 bits of each key's hash
/// beside its instance (8 bytes a slot) and places entries by those bits. A lookup checks every
/// slot with the right bits against the instance itself (`verify`), so it is exact: equal bits
/// only cost a check (one lookup in ten thousand at a million entries).
#[derive(Default)]
pub(crate) struct FingerIndex {
    slots: Vec<(u32, u32)>,
    len: usize,
}

/// The 32 bits kept of a hash; never 0, which marks an empty slot.
#[inline]
fn finger(h: u64) -> u32 {
    let f = (h >> 32) as u32 ^ h as u32;
    if f == 0 { 1 } else { f }
}

impl FingerIndex {
    /// Heap bytes held.
    pub fn heap_bytes(&self) -> usize {
        self.slots.capacity() * std::mem::size_of::<(u32, u32)>()
    }

    #[inline]
    fn home(&self, f: u32) -> usize {
        (f as usize) & self.slots.len().wrapping_sub(1)
    }

    /// The first instance stored under `h` that `verify` accepts.
    #[inline]
    pub fn get(&self, h: u64, mut verify: impl FnMut(u32) -> bool) -> Option<u32> {
        if self.slots.is_empty() {
            return None;
        }
        let f = finger(h);
        let mask = self.slots.len() - 1;
        let mut i = self.home(f);
        loop {
            let (sf, v) = self.slots[i];
            if sf == 0 {
                return None;
            }
            if sf == f && verify(v) {
                return Some(v);
            }
            i = (i + 1) & mask;
        }
    }

    /// Stores `value` under `h` (beside any others with the same bits).
    pub fn insert(&mut self, h: u64, value: u32) {
        if (self.len + 1) * 4 > self.slots.len() * 3 {
            let capacity = (self.slots.len() * 2).max(16);
            let old = std::mem::replace(&mut self.slots, vec![(0, 0); capacity]);
            for (f, v) in old {
                if f != 0 {
                    self.place(f, v);
                }
            }
        }
        self.place(finger(h), value);
        self.len += 1;
    }

    fn place(&mut self, f: u32, v: u32) {
        let mask = self.slots.len() - 1;
        let mut i = self.home(f);
        while self.slots[i].0 != 0 {
            i = (i + 1) & mask;
        }
        self.slots[i] = (f, v);
    }

    /// Asks the processor to fetch the home slot of `h` into cache ahead of a lookup.
    #[inline]
    pub fn prefetch(&self, h: u64) {
        if !self.slots.is_empty() {
            prefetch(&self.slots[self.home(finger(h))]);
        }
    }
}

#[inline]
fn prefetch<T>(slot: &T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is a hint with no architectural effect; the pointer is valid anyway.
    unsafe {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        _mm_prefetch::<_MM_HINT_T0>((slot as *const T).cast::<i8>());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = slot;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn behaves_like_a_map() {
        let mut flat: FlatMap<u32> = FlatMap::default();
        let mut model: HashMap<u64, u32> = HashMap::new();
        let mut x = 0x1234_5678u64;
        for n in 0..50_000u32 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Few distinct keys, so that updates and collisions happen; key 0 included.
            let key = if n % 1000 == 0 { 0 } else { (x % 20_000).wrapping_mul(0x9E37_79B9_7F4A_7C15) };
            assert_eq!(flat.insert(key, n), model.insert(key, n));
            if n % 7 == 0 {
                let probe = x.rotate_left(7) % 20_000;
                let probe = probe.wrapping_mul(0x9E37_79B9_7F4A_7C15);
                assert_eq!(flat.get(probe), model.get(&probe).copied());
            }
        }
        assert_eq!(flat.len(), model.len());
        for (k, v) in &model {
            assert_eq!(flat.get(*k), Some(*v));
        }
        let mut empty: FlatMap<u32> = FlatMap::default();
        empty.clear_to(flat.slot_count());
        assert_eq!((empty.len(), empty.heap_bytes()), (0, flat.heap_bytes()));
        let (slots, buffer) = (flat.slot_count(), flat.slots.as_ptr());
        flat.clear_to(slots);
        assert_eq!((flat.len(), flat.slot_count(), flat.slots.as_ptr()), (0, slots, buffer), "cleared in place");
        assert_eq!(flat.get(model.keys().next().copied().unwrap()), None);
        flat.prefetch(42);
    }

    #[test]
    fn finger_index_finds_every_entry_and_only_verified_ones() {
        let mut index = FingerIndex::default();
        let keys: Vec<u64> = (0..30_000u64).map(|k| crate::compact::mix(k, 7)).collect();
        for (v, h) in keys.iter().enumerate() {
            index.insert(*h, v as u32);
        }
        // Two entries under one hash: the verifier picks.
        index.insert(keys[5], 99_999);
        for (v, h) in keys.iter().enumerate() {
            assert_eq!(index.get(*h, |x| x == v as u32), Some(v as u32));
        }
        assert_eq!(index.get(keys[5], |x| x == 99_999), Some(99_999));
        assert_eq!(index.get(crate::compact::mix(1_000_000, 7), |_| true), None);
        index.prefetch(keys[0]);
    }
}

//! One order's n-grams: each is its context (an id of the order below) and
//! its last word, numbered densely in the order they were first seen.
//!
//! The n-gram `w1..wn` is the key `(id of w1..w(n-1), wn)` packed in a `u64`,
//! so every order's lookup is one hash probe of one integer whatever `n` is,
//! and a model's memory is its distinct n-grams: per n-gram the key (8
//! bytes), its slot in the hash map (about 16-36 bytes) and what the caller
//! keeps beside the id (counts while fitting, log10 probability and backoff
//! after). Unigrams are not hashed: the unigram of word `w` has id `w`.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};

use crate::error::{Error, Result};

/// The n-grams of one order.
#[derive(Clone, Debug, Default)]
pub struct Table {
    /// Key -> id; empty for unigrams.
    map: HashMap<u64, u32, MixBuild>,
    /// Id -> key.
    keys: Vec<u64>,
    unigrams: bool,
}

#[inline(always)]
fn key(context: u32, word: u32) -> u64 {
    (u64::from(context) << 32) | u64::from(word)
}

impl Table {
    /// The unigrams of `words` words: ids equal word ids, context 0.
    pub fn unigrams(words: usize) -> Table {
        Table {
            map: HashMap::default(),
            keys: (0..words as u64).collect(),
            unigrams: true,
        }
    }

    /// An empty table of n-grams of order 2 or more.
    pub fn new() -> Table {
        Table::default()
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The id of the n-gram `(context, word)`, if present.
    #[inline(always)]
    pub fn get(&self, context: u32, word: u32) -> Option<u32> {
        if self.unigrams {
            return ((word as usize) < self.keys.len()).then_some(word);
        }
        self.map.get(&key(context, word)).copied()
    }

    /// The id of `(context, word)`, added if new; and whether it was new.
    #[inline(always)]
    pub fn intern(&mut self, context: u32, word: u32) -> Result<(u32, bool)> {
        let k = key(context, word);
        let next = self.keys.len();
        match self.map.entry(k) {
            std::collections::hash_map::Entry::Occupied(e) => Ok((*e.get(), false)),
            std::collections::hash_map::Entry::Vacant(e) => {
                let id = u32::try_from(next)
                    .map_err(|_| Error::value("more than 2^32 distinct n-grams of one order"))?;
                e.insert(id);
                self.keys.push(k);
                Ok((id, true))
            }
        }
    }

    /// The context id of n-gram `id` (an id of the order below; 0 for unigrams).
    #[inline(always)]
    pub fn context(&self, id: u32) -> u32 {
        self.keys.get(id as usize).map_or(0, |k| (k >> 32) as u32)
    }

    /// The last word of n-gram `id`.
    #[inline(always)]
    pub fn word(&self, id: u32) -> u32 {
        self.keys.get(id as usize).map_or(0, |k| *k as u32)
    }

    /// Room for `additional` more n-grams.
    pub fn reserve(&mut self, additional: usize) {
        self.map.reserve(additional);
        self.keys.reserve(additional);
    }

    /// Gives back spare capacity once the table is complete.
    pub fn shrink_to_fit(&mut self) {
        self.map.shrink_to_fit();
        self.keys.shrink_to_fit();
    }
}

/// Hashes a `u64` key with one folded 64x64->128-bit multiply: every bit of
/// the key reaches both the low bits (the bucket) and the high bits (the
/// tag) hashbrown reads.
#[derive(Clone, Copy, Debug, Default)]
pub struct MixBuild;

impl BuildHasher for MixBuild {
    type Hasher = MixHasher;
    fn build_hasher(&self) -> MixHasher {
        MixHasher(0)
    }
}

pub struct MixHasher(u64);

impl Hasher for MixHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(self.0 ^ u64::from(b));
        }
    }

    #[inline(always)]
    fn write_u64(&mut self, x: u64) {
        let p = u128::from(x ^ self.0).wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835);
        self.0 = (p as u64) ^ ((p >> 64) as u64);
    }

    #[inline(always)]
    fn finish(&self) -> u64 {
        self.0
    }
}

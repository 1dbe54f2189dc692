//! The lookup structures behind [`Vocab`](super::Vocab)'s token -> id maps:
//! the hash map type and its hasher, the packed `u128` keys of short tokens,
//! and the table of single-character tokens.
//!
//! Separate because they are performance machinery with reasons of their own
//! (why this hasher, why two overlapping loads) and tests of their own; the
//! rest of the module uses them only through `Map`, `pack` and `CharTable`.

// Values from Python and from vocabulary files reach this module: no index or
// slice may panic.
#![cfg_attr(not(test), deny(clippy::indexing_slicing))]

use std::collections::HashMap;

/// The maps' hasher: foldhash (the crate hashbrown itself defaults to), in
/// its quality variant, seeded at random once per process. The fast variant's
/// hashes of the packed (u128) short tokens filled only ~93% of the buckets
/// random hashes fill for some seeds (the test below failed one run in a
/// few); the quality variant's final avalanche costs a multiply per hash.
///
/// Why not FxHash, used here before: its one multiply per word leaves the
/// low bits, from which hashbrown picks a bucket, depending on the low bits
/// of the key alone, so tokens sharing a prefix or a length ("w0".."w1999999",
/// 7-digit numbers) crowded into a few buckets and loading two million of
/// them took 48 s. foldhash folds a full 64x64->128-bit product, mixing every
/// key bit into every hash bit, at about FxHash's speed on short keys.
///
/// Why not SipHash (std's default): vocabulary files can come from
/// elsewhere, and SipHash is the choice against an adversary who can craft
/// keys for a known function; here the random per-process seed already
/// keeps collisions from being computed in advance (foldhash is "minimally
/// DoS-resistant"), a file is loaded once rather than probed interactively,
/// and SipHash would cost a word-level encode, which hashes every token of
/// the text, several times its lookups.
pub(super) type Map<K, V> = HashMap<K, V, foldhash::quality::RandomState>;

/// `token`'s bytes and length in one integer, for tokens up to 15 bytes.
///
/// Built from two overlapping loads rather than a copy into a buffer: reading
/// the buffer back right after a byte-wise copy stalls on store forwarding,
/// which made this the most expensive step of a word-level encode.
#[inline(always)]
pub(super) fn pack(token: &str) -> Option<u128> {
    let b = token.as_bytes();
    let n = b.len();
    // The first and the last 2, 4 or 8 bytes. Each arm below reads at most
    // n bytes, so the `None` fallbacks never apply (and compile away).
    let first8 = || b.first_chunk().map_or(0, |c| u64::from_le_bytes(*c));
    let last8 = || b.last_chunk().map_or(0, |c| u64::from_le_bytes(*c));
    let first4 = || u64::from(b.first_chunk().map_or(0, |c| u32::from_le_bytes(*c)));
    let last4 = || u64::from(b.last_chunk().map_or(0, |c| u32::from_le_bytes(*c)));
    let first2 = || u64::from(b.first_chunk().map_or(0, |c| u16::from_le_bytes(*c)));
    let last2 = || u64::from(b.last_chunk().map_or(0, |c| u16::from_le_bytes(*c)));
    // The first and the last bytes, overlapping in the middle (equal bytes OR
    // to themselves); `hi` holds bytes 8.. when there are more than 8.
    let (lo, hi) = match n {
        0 => (0, 0),
        1 => (b.first().map_or(0, |&x| u64::from(x)), 0),
        2..=3 => (first2() | last2() << ((n - 2) * 8), 0),
        4..=7 => (first4() | last4() << ((n - 4) * 8), 0),
        8 => (first8(), 0),
        9..=15 => (first8(), last8() >> ((16 - n) * 8)),
        _ => return None,
    };
    Some(u128::from(lo) | u128::from(hi) << 64 | (n as u128) << 120)
}

/// The character `token` consists of, if it is one.
fn single_char(token: &str) -> Option<char> {
    let mut cs = token.chars();
    match (cs.next(), cs.next()) {
        (Some(c), None) => Some(c),
        _ => None,
    }
}

/// The id of each single-character token: a dense table for the Basic
/// Multilingual Plane (up to the largest code point present), a map beyond.
#[derive(Clone, Debug, Default)]
pub(super) struct CharTable {
    dense: Vec<i64>,
    rest: Map<char, i64>,
}

impl CharTable {
    const DENSE_LIMIT: u32 = 0x1_0000;

    pub(super) fn new(tokens: &[String]) -> CharTable {
        let single = |t: &String| single_char(t);
        let dense_len = tokens
            .iter()
            .filter_map(single)
            .map(|c| c as u32 + 1)
            .filter(|&n| n <= Self::DENSE_LIMIT)
            .max()
            .unwrap_or(0);
        let mut table = CharTable {
            dense: vec![-1; dense_len as usize],
            rest: Map::default(),
        };
        for (id, tok) in tokens.iter().enumerate() {
            if let Some(c) = single(tok) {
                // `dense` covers every single character below DENSE_LIMIT.
                if let Some(slot) = table.dense.get_mut(c as usize) {
                    *slot = id as i64;
                } else {
                    table.rest.insert(c, id as i64);
                }
            }
        }
        table
    }

    #[inline]
    pub(super) fn get(&self, c: char) -> Option<i64> {
        match self.dense.get(c as usize) {
            Some(&id) if id >= 0 => Some(id),
            Some(_) => None,
            None => self.rest.get(&c).copied(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pack_is_the_bytes_and_the_length() {
        let words = [
            "",
            "a",
            "ab",
            "abc",
            "abcd",
            "abcdefg",
            "abcdefgh",
            "abcdefghi",
            "é日🙂xyz",
        ];
        for w in words.iter().chain(&["abcdefghijklmno"]) {
            let mut buf = [0u8; 16];
            buf[..w.len()].copy_from_slice(w.as_bytes());
            buf[15] = w.len() as u8;
            assert_eq!(pack(w), Some(u128::from_le_bytes(buf)), "{w}");
        }
        assert_eq!(pack("abcdefghijklmnop"), None);
    }

    /// The hashes of structured tokens ("w0".."w99999", as Strings for the
    /// `ids` map and packed for the `short` one) spread over the bits
    /// hashbrown uses: the low 17 (the bucket of a table of 2^17) fill as
    /// many buckets as random hashes would, with no bucket crowded, and the
    /// top 7 (its control tag) are near uniform. FxHash failed this: its low
    /// bits depend on the low bits of the key only.
    #[test]
    fn structured_tokens_hash_uniformly() {
        use std::hash::BuildHasher;
        let build = <Map<String, i64> as Default>::default().hasher().clone();
        let n = 100_000usize;
        let tokens: Vec<String> = (0..n).map(|i| format!("w{i}")).collect();
        let strings: Vec<u64> = tokens.iter().map(|t| build.hash_one(t)).collect();
        let packed: Vec<u64> = tokens
            .iter()
            .map(|t| build.hash_one(pack(t).unwrap()))
            .collect();
        for (what, hashes) in [("String", strings), ("packed", packed)] {
            let buckets = 1usize << 17;
            let mut load = vec![0u32; buckets];
            let mut tags = [0u32; 128];
            for h in &hashes {
                load[(*h as usize) & (buckets - 1)] += 1;
                tags[(h >> 57) as usize] += 1;
            }
            // Random hashes fill 1 - e^-λ of the buckets (λ = n / buckets,
            // 53% here, sd ~0.2%) and leave none above ~10.
            let lambda = n as f64 / buckets as f64;
            let want = buckets as f64 * (1.0 - (-lambda).exp());
            let used = load.iter().filter(|&&c| c > 0).count() as f64;
            let worst = load.iter().max().copied().unwrap_or(0);
            assert!(
                used > 0.97 * want,
                "{what}: {used} buckets used, random: {want:.0}"
            );
            assert!(worst <= 12, "{what}: a bucket holds {worst} tokens");
            // 127 degrees of freedom: P(chi2 > 230) is about 1e-7.
            let e = n as f64 / 128.0;
            let chi2: f64 = tags.iter().map(|&c| (c as f64 - e).powi(2) / e).sum();
            assert!(chi2 < 230.0, "{what}: tag chi-square {chi2}");
        }
    }
}

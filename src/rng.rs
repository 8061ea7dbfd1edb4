//! Seeded random streams.
//!
//! Same seed, same numbers: every consumer of randomness draws from its own
//! ChaCha stream derived from the run seed and a stable name, so a method's
//! numbers do not depend on which other methods share the experiment file,
//! nor on the order in which threads run them.

use rand::SeedableRng;
use rand_chacha::ChaCha12Rng;
use rand_distr::{Distribution, StandardNormal};

/// The generator used throughout rime.
pub type Rng = ChaCha12Rng;

/// A generator for `(seed, name)`: the ChaCha stream is a stable 64-bit
/// hash (FNV-1a) of `name`.
pub fn stream(seed: u64, name: &str) -> Rng {
    let mut rng = ChaCha12Rng::seed_from_u64(seed);
    rng.set_stream(fnv1a(name.as_bytes()));
    rng
}

/// A 64-bit key for `(seed, name)`, to seed further streams (e.g. the
/// noise of a stochastic model, keyed per member and step).
pub fn key(seed: u64, name: &str) -> u64 {
    use rand::RngCore;
    stream(seed, name).next_u64()
}

fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// `n` independent standard normal draws.
pub fn standard_normal(rng: &mut Rng, n: usize) -> Vec<f64> {
    (0..n).map(|_| StandardNormal.sample(rng)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_reproducible_and_distinct() {
        let a = standard_normal(&mut stream(7, "etkf"), 4);
        let b = standard_normal(&mut stream(7, "etkf"), 4);
        let c = standard_normal(&mut stream(7, "letkf"), 4);
        assert_eq!(a, b);
        assert_ne!(a, c);
    }
}

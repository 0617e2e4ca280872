//! Seeded randomness: one stream per `(seed, index, domain)`, and the deterministic ids drawn
//! from it.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Domain tags keep the patient and clinic RNG streams disjoint even for equal (seed, index).
pub(crate) const DOMAIN_PATIENT: &[u8; 16] = b"hc-synth-patient";

pub(crate) const DOMAIN_GP: &[u8; 16] = b"hc-synth-gp-clin";

pub(crate) fn rng_for(seed: u64, index: u64, domain: &[u8; 16]) -> ChaCha8Rng {
    // A full 256-bit key instead of `seed ^ index * k` so that distinct (seed, index) pairs can
    // never alias each other's stream.
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&seed.to_le_bytes());
    key[8..16].copy_from_slice(&index.to_le_bytes());
    key[16..].copy_from_slice(domain);
    ChaCha8Rng::from_seed(key)
}

/// A UUIDv7-shaped id whose "timestamp" is the patient's index: deterministic, yet ordered by
/// patient, so a large generated population is written at the right edge of every id-keyed
/// index instead of at random pages.
pub(crate) fn new_id(rng: &mut ChaCha8Rng, patient_index: u64) -> String {
    let random: [u8; 10] = rng.r#gen();
    uuid::Builder::from_unix_timestamp_millis(patient_index, &random)
        .into_uuid()
        .to_string()
}

pub(crate) fn pick<'a, T>(rng: &mut ChaCha8Rng, items: &'a [T]) -> &'a T {
    &items[rng.gen_range(0..items.len())]
}

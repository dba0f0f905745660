//! Pauses between attempts. Invocations that met on one item and pause for exactly the same time
//! meet again, so every pause is jittered (half to one and a half times its base).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// `base` scaled by a factor between 0.5 and 1.5, different for each call.
pub fn jittered(base: Duration) -> Duration {
    static CALLS: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let seed = u64::from(nanos)
        ^ CALLS
            .fetch_add(1, Ordering::Relaxed)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ u64::from(std::process::id()) << 32;
    // splitmix64's finaliser: every input bit moves the outcome.
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    let per_mille = 500 + z % 1001;
    base.mul_f64(per_mille as f64 / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_stay_within_half_and_one_and_a_half_and_differ() {
        let base = Duration::from_millis(100);
        let pauses: Vec<Duration> = (0..200).map(|_| jittered(base)).collect();
        assert!(pauses.iter().all(|p| *p >= base / 2 && *p <= base * 3 / 2));
        let mut distinct = pauses.clone();
        distinct.sort();
        distinct.dedup();
        assert!(distinct.len() > 100, "{} distinct pauses", distinct.len());
    }
}

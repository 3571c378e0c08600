//! A small xorshift generator seeded from the operating system: load
//! choices and unique values, not secrets.

/// xorshift64*.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// Seeded from `getrandom`.
    ///
    /// # Errors
    ///
    /// If the operating system has no randomness to give.
    pub fn new() -> Result<Self, String> {
        let mut seed = [0u8; 8];
        getrandom::fill(&mut seed).map_err(|e| e.to_string())?;
        Ok(Self(u64::from_le_bytes(seed) | 1))
    }

    /// The next number.
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        let n = u64::try_from(n.max(1)).unwrap_or(u64::MAX);
        usize::try_from(self.next() % n).unwrap_or(0)
    }

    /// Eight hex digits naming a run (its users, its values).
    pub fn tag(&mut self) -> String {
        format!("{:08x}", self.next() >> 32)
    }
}

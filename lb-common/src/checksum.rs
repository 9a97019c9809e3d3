//! Internet checksum arithmetic shared by the XDP program (incremental
//! updates) and userspace (tests, benchmarks).

/// Folds carries back into the low 16 bits (twice suffices for the sums
/// built here).
#[inline(always)]
pub fn fold(mut sum: u32) -> u32 {
    sum = (sum & 0xffff) + (sum >> 16);
    (sum & 0xffff) + (sum >> 16)
}

/// The change to one checksum, accumulated over every 16-bit word that a
/// rewrite replaces: RFC 1624 eqn. 3, HC' = ~(~HC + ~m + m'), summed over
/// all (m, m') pairs.
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
#[repr(transparent)]
pub struct Delta(u32);

impl Delta {
    /// The accumulated value, to pass a delta through a register.
    #[inline(always)]
    pub const fn raw(self) -> u32 {
        self.0
    }

    #[inline(always)]
    pub const fn from_raw(raw: u32) -> Self {
        Delta(raw)
    }

    /// Records that `old` (an even number of bytes) became `new`.
    #[inline(always)]
    pub fn replace<const N: usize>(&mut self, old: &[u8; N], new: &[u8; N]) {
        let mut i = 0;
        while i + 1 < N {
            let m = u16::from_be_bytes([old[i], old[i + 1]]);
            let m_new = u16::from_be_bytes([new[i], new[i + 1]]);
            self.0 = fold(self.0 + u32::from(!m) + u32::from(m_new));
            i += 2;
        }
    }

    /// Merges another delta into this one.
    #[inline(always)]
    pub fn add(&mut self, other: Delta) {
        self.0 = fold(self.0 + other.0);
    }

    /// The checksum `old` becomes after the recorded changes.
    #[inline(always)]
    pub fn apply(self, old: u16) -> u16 {
        let sum = fold(u32::from(!old) + self.0);
        !(sum as u16)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full_checksum(bytes: &[u8]) -> u16 {
        let mut sum = 0u32;
        for pair in bytes.chunks(2) {
            sum += u32::from(u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]));
            sum = fold(sum);
        }
        !(fold(sum) as u16)
    }

    #[test]
    fn incremental_update_matches_a_full_recomputation() {
        let mut data = [
            0x45u8, 0, 0, 40, 1, 2, 0, 0, 64, 6, 0, 0, 198, 18, 0, 2, 198, 18, 0, 100,
        ];
        let before = full_checksum(&data);
        let mut delta = Delta::default();
        let edits: [(usize, [u8; 4]); 2] = [(16, [198, 18, 0, 11]), (12, [255, 255, 0, 1])];
        for (at, new) in edits {
            let mut old = [0u8; 4];
            old.copy_from_slice(&data[at..at + 4]);
            data[at..at + 4].copy_from_slice(&new);
            delta.replace(&old, &new);
        }
        assert_eq!(delta.apply(before), full_checksum(&data));
    }

    #[test]
    fn no_change_keeps_the_checksum() {
        let mut delta = Delta::default();
        delta.replace(&[1, 2, 3, 4], &[1, 2, 3, 4]);
        assert_eq!(delta.apply(0x1234), 0x1234);
    }
}

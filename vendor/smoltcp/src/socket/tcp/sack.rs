//! rkt-io patch: the sender's SACK scoreboard (RFC 2018, RFC 6675).
//!
//! smoltcp repaired one lost segment per three duplicate ACKs, so a burst loss
//! (many segments of one window) waited for the retransmission timeout. With the
//! SACK blocks the peer sends, the socket keeps this scoreboard of what the peer
//! holds above the cumulative ACK, and retransmits every hole of a window within
//! about one round trip (see `Socket::next_retransmit`).
//!
//! Every range in the scoreboard lies inside what was sent and above what was
//! acknowledged (the socket checks blocks from the wire before inserting them),
//! so the arithmetic below cannot underflow.

use crate::wire::TcpSeqNumber;

/// Ranges remembered; the highest are forgotten first when a peer reports more
/// holes than this, which only makes the sender more conservative.
const RANGES: usize = 16;

#[derive(Debug, Clone, Copy)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub(super) struct Scoreboard {
    /// Sorted, disjoint and not touching: `ranges[i].1 < ranges[i + 1].0`.
    ranges: [(TcpSeqNumber, TcpSeqNumber); RANGES],
    len: usize,
}

impl Default for Scoreboard {
    fn default() -> Self {
        Scoreboard {
            ranges: [(TcpSeqNumber::default(), TcpSeqNumber::default()); RANGES],
            len: 0,
        }
    }
}

impl Scoreboard {
    fn ranges(&self) -> &[(TcpSeqNumber, TcpSeqNumber)] {
        &self.ranges[..self.len]
    }

    pub(super) fn clear(&mut self) {
        self.len = 0;
    }

    #[cfg(test)]
    pub(super) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Records `[start, end)` as held by the peer. The caller has checked
    /// `start < end`.
    pub(super) fn insert(&mut self, start: TcpSeqNumber, end: TcpSeqNumber) {
        if start >= end {
            return;
        }
        let mut out = [(TcpSeqNumber::default(), TcpSeqNumber::default()); RANGES + 1];
        let mut n = 0;
        let mut new = (start, end);
        let mut placed = false;
        for &(s, e) in self.ranges() {
            if e < new.0 || placed {
                out[n] = (s, e);
                n += 1;
            } else if new.1 < s {
                out[n] = new;
                out[n + 1] = (s, e);
                n += 2;
                placed = true;
            } else {
                // Overlapping or touching: merge.
                new = (s.min(new.0), e.max(new.1));
            }
        }
        if !placed {
            out[n] = new;
            n += 1;
        }
        let n = n.min(RANGES);
        self.ranges[..n].copy_from_slice(&out[..n]);
        self.len = n;
    }

    /// Forgets everything below the cumulative ACK `una`.
    pub(super) fn advance(&mut self, una: TcpSeqNumber) {
        let mut n = 0;
        for i in 0..self.len {
            let (s, e) = self.ranges[i];
            if e <= una {
                continue;
            }
            self.ranges[n] = (s.max(una), e);
            n += 1;
        }
        self.len = n;
    }

    /// Octets SACKed in all.
    pub(super) fn sacked(&self) -> usize {
        self.ranges().iter().map(|&(s, e)| e - s).sum()
    }

    /// Octets SACKed at or above `seq`.
    pub(super) fn sacked_above(&self, seq: TcpSeqNumber) -> usize {
        self.ranges()
            .iter()
            .filter(|&&(_, e)| e > seq)
            .map(|&(s, e)| e - s.max(seq))
            .sum()
    }

    /// The first hole at or after `from` that lies below a SACKed range:
    /// `[start, end)` where `end` is where the next SACKed range begins.
    pub(super) fn hole_from(&self, from: TcpSeqNumber) -> Option<(TcpSeqNumber, TcpSeqNumber)> {
        let mut at = from;
        for &(s, e) in self.ranges() {
            if e <= at {
                continue;
            }
            if s <= at {
                at = e;
                continue;
            }
            return Some((at, s));
        }
        None
    }

    /// Octets in holes at or after `from` that count as lost: RFC 6675's
    /// IsLost, more than two segments of `mss` SACKed above them. One pass:
    /// `above` is what is SACKed from the end of the current hole on.
    pub(super) fn lost_from(&self, from: TcpSeqNumber, mss: usize) -> usize {
        let mut lost = 0;
        let mut at = from;
        let mut above = self.sacked_above(from);
        for &(s, e) in self.ranges() {
            if e <= at {
                continue;
            }
            if s > at {
                // The hole [at, s): everything SACKed from s on lies above it.
                if above <= 2 * mss {
                    // `above` only shrinks further up.
                    break;
                }
                lost += s - at;
            }
            above -= e - s.max(at);
            at = e;
        }
        lost
    }
}

#[cfg(test)]
mod test {
    use super::*;

    fn seq(n: i32) -> TcpSeqNumber {
        TcpSeqNumber(n)
    }

    fn board(ranges: &[(i32, i32)]) -> Scoreboard {
        let mut b = Scoreboard::default();
        for &(s, e) in ranges {
            b.insert(seq(s), seq(e));
        }
        b
    }

    fn list(b: &Scoreboard) -> Vec<(i32, i32)> {
        b.ranges().iter().map(|&(s, e)| (s.0, e.0)).collect()
    }

    #[test]
    fn insert_keeps_ranges_sorted_and_merges() {
        let b = board(&[(300, 400), (100, 200), (500, 600)]);
        assert_eq!(list(&b), vec![(100, 200), (300, 400), (500, 600)]);
        let mut b2 = b;
        b2.insert(seq(200), seq(300)); // touches both neighbours
        assert_eq!(list(&b2), vec![(100, 400), (500, 600)]);
        b2.insert(seq(50), seq(700)); // covers everything
        assert_eq!(list(&b2), vec![(50, 700)]);
        b2.insert(seq(10), seq(10)); // empty
        assert_eq!(list(&b2), vec![(50, 700)]);
        assert_eq!(b2.sacked(), 650);
    }

    #[test]
    fn insert_across_the_sequence_wrap() {
        let b = board(&[(i32::MAX - 99, i32::MIN + 100), (i32::MIN + 200, i32::MIN + 300)]);
        assert_eq!(b.sacked(), 300);
        assert_eq!(b.sacked_above(seq(i32::MIN + 150)), 100);
        assert_eq!(
            b.hole_from(seq(i32::MAX - 199)),
            Some((seq(i32::MAX - 199), seq(i32::MAX - 99)))
        );
    }

    #[test]
    fn a_full_board_forgets_the_highest_ranges() {
        let mut b = Scoreboard::default();
        for i in 0..(RANGES as i32 + 4) {
            b.insert(seq(1000 + i * 100), seq(1050 + i * 100));
        }
        assert_eq!(b.ranges().len(), RANGES);
        assert_eq!(b.ranges()[0], (seq(1000), seq(1050)));
        // A new low range still goes in.
        b.insert(seq(100), seq(200));
        assert_eq!(b.ranges()[0], (seq(100), seq(200)));
        assert_eq!(b.ranges().len(), RANGES);
    }

    #[test]
    fn advance_trims_and_drops() {
        let mut b = board(&[(100, 200), (300, 400)]);
        b.advance(seq(150));
        assert_eq!(list(&b), vec![(150, 200), (300, 400)]);
        b.advance(seq(350));
        assert_eq!(list(&b), vec![(350, 400)]);
        b.advance(seq(400));
        assert!(b.is_empty());
    }

    #[test]
    fn holes_and_losses() {
        // una = 0, mss = 100: a hole [0, 300), 400 SACKed, a hole [700, 800), 100 SACKed.
        let b = board(&[(300, 700), (800, 900)]);
        assert_eq!(b.hole_from(seq(0)), Some((seq(0), seq(300))));
        assert_eq!(b.hole_from(seq(150)), Some((seq(150), seq(300))));
        assert_eq!(b.hole_from(seq(300)), Some((seq(700), seq(800))));
        assert_eq!(b.hole_from(seq(900)), None);
        assert_eq!(b.sacked_above(seq(0)), 500);
        assert_eq!(b.sacked_above(seq(750)), 100);
        // Only the first hole has more than 2 * mss SACKed above it.
        assert_eq!(b.lost_from(seq(0), 100), 300);
        assert_eq!(b.lost_from(seq(200), 100), 100);
        assert_eq!(b.lost_from(seq(300), 100), 0);
        assert_eq!(b.lost_from(seq(0), 10), 400);
    }
}

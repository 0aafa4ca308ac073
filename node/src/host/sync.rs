//! Block sync's bookkeeping: which peer claims which height, whom to ask, and who lied.
//!
//! A peer's `Status` is a claim, not a fact: a peer that claims a height and then serves
//! nothing (an empty answer, a failed or timed-out request) gets a strike and is demoted
//! for a while (doubling with each strike, up to [`DEMOTION_MAX_MS`]), so the next
//! request goes to another peer. A peer that serves a block that fails its certificate
//! or re-execution is demoted for the longest time (and disconnected by the host). One
//! that serves a valid block is trusted again. A validator claiming `u64::MAX` and
//! serving nothing therefore costs a lagging node one request timeout, not its catch-up.
//!
//! Time is an input (`now_ms`), so the node simulation replays it exactly.

use std::collections::BTreeMap;

/// How long a request may go unanswered before it counts as failed.
pub const REQUEST_TIMEOUT_MS: u64 = 10_000;
/// The first demotion; each further strike doubles it.
pub const DEMOTION_MIN_MS: u64 = 1_000;
/// The longest demotion (also what serving a bad block costs).
pub const DEMOTION_MAX_MS: u64 = 60_000;

#[derive(Debug, Clone, Default)]
struct PeerRecord {
    claimed: u64,
    strikes: u32,
    demoted_until_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct InFlight<P> {
    peer: P,
    from: u64,
    sent_ms: u64,
}

/// Sync state over peers of type `P` (a libp2p peer id, or a simulated node's index).
#[derive(Debug, Clone)]
pub struct BlockSync<P> {
    peers: BTreeMap<P, PeerRecord>,
    in_flight: Option<InFlight<P>>,
}

impl<P> Default for BlockSync<P> {
    fn default() -> Self {
        BlockSync {
            peers: BTreeMap::new(),
            in_flight: None,
        }
    }
}

impl<P: Copy + Ord + std::fmt::Debug> BlockSync<P> {
    pub fn connected(&mut self, peer: P) {
        self.peers.entry(peer).or_default();
    }

    pub fn disconnected(&mut self, peer: P) {
        // Strikes are kept for when it comes back: reconnecting does not clear a lie.
        if let Some(record) = self.peers.get_mut(&peer) {
            record.claimed = 0;
        }
        if self.in_flight.is_some_and(|f| f.peer == peer) {
            self.in_flight = None;
        }
    }

    pub fn peers(&self) -> usize {
        self.peers.len()
    }

    /// A peer's claimed last committed height.
    pub fn on_status(&mut self, peer: P, height: u64) {
        self.peers.entry(peer).or_default().claimed = height;
    }

    fn usable(&self, now_ms: u64) -> impl Iterator<Item = (&P, &PeerRecord)> {
        self.peers
            .iter()
            .filter(move |(_, r)| r.demoted_until_ms <= now_ms)
    }

    /// The highest height claimed by a peer that is not demoted.
    /// Each peer's claimed height, and whether it is demoted or asked now, for a log line.
    pub fn describe(&self, now_ms: u64) -> String {
        let asked = self.in_flight.map(|f| f.peer);
        let peers: Vec<String> = self
            .peers
            .iter()
            .map(|(peer, r)| {
                let mut s = format!("{peer:?} claims {}", r.claimed);
                if r.demoted_until_ms > now_ms {
                    s.push_str(&format!(
                        " (demoted {} ms more, {} strikes)",
                        r.demoted_until_ms - now_ms,
                        r.strikes
                    ));
                }
                if asked == Some(*peer) {
                    s.push_str(" (asked)");
                }
                s
            })
            .collect();
        if peers.is_empty() {
            "no peers".into()
        } else {
            peers.join(", ")
        }
    }

    pub fn best_claim(&self, now_ms: u64) -> u64 {
        self.usable(now_ms)
            .map(|(_, r)| r.claimed)
            .max()
            .unwrap_or(0)
    }

    /// Whether a request is out (and not yet timed out: a timed-out one is a strike).
    pub fn busy(&mut self, now_ms: u64) -> bool {
        match self.in_flight {
            Some(f) if now_ms.saturating_sub(f.sent_ms) >= REQUEST_TIMEOUT_MS => {
                self.in_flight = None;
                self.strike(f.peer, now_ms);
                false
            }
            Some(_) => true,
            None => false,
        }
    }

    /// Whom to ask for blocks from `from` on, if any non-demoted peer claims to have
    /// them: the highest claim among those with the fewest strikes. `beyond` is how far
    /// past `from - 1` a claim must be to be worth a request.
    pub fn next_request(&mut self, from: u64, beyond: u64, now_ms: u64) -> Option<P> {
        if self.busy(now_ms) {
            return None;
        }
        let target = from.saturating_sub(1).saturating_add(beyond);
        let (peer, _) = self
            .usable(now_ms)
            .filter(|(_, r)| r.claimed >= target.max(from))
            .min_by_key(|(p, r)| (r.strikes, std::cmp::Reverse(r.claimed), **p))?;
        let peer = *peer;
        self.in_flight = Some(InFlight {
            peer,
            from,
            sent_ms: now_ms,
        });
        Some(peer)
    }

    /// A response arrived with `served` blocks that applied (out of `offered`). Returns
    /// whether it answered our request.
    pub fn on_response(&mut self, peer: P, offered: usize, served: usize, now_ms: u64) -> bool {
        let ours = self.in_flight.is_some_and(|f| f.peer == peer);
        if ours {
            self.in_flight = None;
        }
        if served > 0 {
            if let Some(record) = self.peers.get_mut(&peer) {
                record.strikes = 0;
                record.demoted_until_ms = 0;
            }
        } else if ours && offered == 0 {
            // Asked because it claimed the blocks, and it served none.
            self.strike(peer, now_ms);
        }
        ours
    }

    /// The request to `peer` failed (refused, timed out, connection lost).
    pub fn on_failure(&mut self, peer: P, now_ms: u64) {
        if self.in_flight.is_some_and(|f| f.peer == peer) {
            self.in_flight = None;
        }
        self.strike(peer, now_ms);
    }

    /// `peer` served a block that failed its checks: the longest demotion.
    pub fn on_bad_block(&mut self, peer: P, now_ms: u64) {
        if self.in_flight.is_some_and(|f| f.peer == peer) {
            self.in_flight = None;
        }
        let record = self.peers.entry(peer).or_default();
        record.strikes = record.strikes.saturating_add(1);
        record.claimed = 0;
        record.demoted_until_ms = now_ms.saturating_add(DEMOTION_MAX_MS);
    }

    fn strike(&mut self, peer: P, now_ms: u64) {
        let record = self.peers.entry(peer).or_default();
        let wait = DEMOTION_MIN_MS
            .saturating_mul(1u64 << record.strikes.min(16))
            .min(DEMOTION_MAX_MS);
        record.strikes = record.strikes.saturating_add(1);
        record.demoted_until_ms = now_ms.saturating_add(wait);
        tracing::debug!(
            ?peer,
            strikes = record.strikes,
            wait_ms = wait,
            "sync: peer demoted"
        );
    }

    /// Whether `peer` is demoted now (for status and tests).
    pub fn is_demoted(&self, peer: &P, now_ms: u64) -> bool {
        self.peers
            .get(peer)
            .is_some_and(|r| r.demoted_until_ms > now_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A liar claiming `u64::MAX` is asked once, serves nothing, and is passed over for
    /// an honest peer from then on, until its demotion ends.
    #[test]
    fn a_peer_that_claims_and_does_not_serve_is_demoted() {
        let mut sync = BlockSync::<u8>::default();
        for p in 0..3 {
            sync.connected(p);
        }
        sync.on_status(0, u64::MAX); // the liar
        sync.on_status(1, 50);
        sync.on_status(2, 40);
        let now = 1_000;
        assert_eq!(
            sync.next_request(11, 1, now),
            Some(0),
            "the highest claim first"
        );
        assert_eq!(sync.next_request(11, 1, now), None, "one request at a time");
        assert!(!sync.on_response(2, 5, 5, now), "not what we asked");
        assert!(sync.on_response(0, 0, 0, now + 5));
        assert!(sync.is_demoted(&0, now + 5));
        assert_eq!(
            sync.best_claim(now + 5),
            50,
            "a demoted peer's claim does not count"
        );
        assert_eq!(sync.next_request(11, 1, now + 5), Some(1));
        assert!(sync.on_response(1, 64, 64, now + 10));
        // The liar's second strike doubles its demotion.
        let back = now + 5 + DEMOTION_MIN_MS;
        assert!(!sync.is_demoted(&0, back));
        sync.on_status(2, 30);
        sync.on_status(1, 75);
        assert_eq!(
            sync.next_request(75, 1, back),
            Some(1),
            "fewest strikes first"
        );
        sync.on_failure(1, back);
        assert_eq!(sync.next_request(75, 1, back), Some(0));
        sync.on_failure(0, back);
        assert!(sync.is_demoted(&0, back + 2 * DEMOTION_MIN_MS - 1));
        assert!(!sync.is_demoted(&0, back + 2 * DEMOTION_MIN_MS));
    }

    #[test]
    fn an_unanswered_request_times_out_into_a_strike() {
        let mut sync = BlockSync::<u8>::default();
        sync.on_status(7, 100);
        sync.on_status(8, 100);
        assert_eq!(sync.next_request(1, 1, 0), Some(7));
        assert_eq!(sync.next_request(1, 1, REQUEST_TIMEOUT_MS - 1), None);
        assert_eq!(sync.next_request(1, 1, REQUEST_TIMEOUT_MS), Some(8));
        assert!(sync.is_demoted(&7, REQUEST_TIMEOUT_MS));
    }

    #[test]
    fn a_bad_block_costs_the_longest_demotion() {
        let mut sync = BlockSync::<u8>::default();
        sync.on_status(1, 9);
        sync.on_bad_block(1, 0);
        assert!(sync.is_demoted(&1, DEMOTION_MAX_MS - 1));
        assert_eq!(sync.next_request(1, 1, 10), None);
    }

    #[test]
    fn the_stuck_warning_names_each_peers_claim_demotion_and_request() {
        let mut sync = BlockSync::<u8>::default();
        assert_eq!(sync.describe(0), "no peers");
        for p in 0..3 {
            sync.connected(p);
        }
        sync.on_status(0, 198);
        sync.on_status(1, 198);
        sync.on_status(2, 197);
        assert_eq!(sync.next_request(198, 1, 1_000), Some(0));
        sync.on_failure(0, 1_500);
        assert_eq!(sync.next_request(198, 1, 1_600), Some(1));
        assert_eq!(
            sync.describe(2_000),
            "0 claims 198 (demoted 500 ms more, 1 strikes), 1 claims 198 (asked), 2 claims 197"
        );
    }
}

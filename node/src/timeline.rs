//! Where a height's time went, as the driver sees it (the host reads no clock): when
//! this node sent or received the height's proposal with its block, sent its prevote
//! and its precommit, and committed, each counted from the height's start, and how
//! long the host itself was busy in between. Logged at debug level once per height
//! (`RUST_LOG=info,cbec_node::driver=debug`), so an operator can tell waiting on peers
//! from work on this node.

use std::time::{Duration, Instant};

use cbec_ledger::VoteKind;

/// One height's marks. The first of each kind counts (rebroadcasts and later rounds do
/// not move it).
#[derive(Debug, Clone)]
pub struct HeightTimeline {
    start: Instant,
    proposal: Option<(Duration, bool)>,
    prevote: Option<Duration>,
    precommit: Option<Duration>,
    busy: Duration,
}

/// A finished height's marks, in milliseconds from its start.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HeightTimes {
    /// The proposal with its block: sent by this node (`true`) or received.
    pub proposal_ms: Option<(f64, bool)>,
    pub prevote_ms: Option<f64>,
    pub precommit_ms: Option<f64>,
    pub commit_ms: f64,
    /// Time spent inside the host (executing, validating, writing the signing state).
    pub busy_ms: f64,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

impl HeightTimeline {
    pub fn new(start: Instant) -> HeightTimeline {
        HeightTimeline {
            start,
            proposal: None,
            prevote: None,
            precommit: None,
            busy: Duration::ZERO,
        }
    }

    pub fn proposal(&mut self, at: Instant, sent: bool) {
        if self.proposal.is_none() {
            self.proposal = Some((at.saturating_duration_since(self.start), sent));
        }
    }

    pub fn vote(&mut self, kind: VoteKind, at: Instant) {
        let since = at.saturating_duration_since(self.start);
        let mark = match kind {
            VoteKind::Prevote => &mut self.prevote,
            VoteKind::Precommit => &mut self.precommit,
        };
        mark.get_or_insert(since);
    }

    pub fn busy(&mut self, spent: Duration) {
        self.busy += spent;
    }

    /// The height's times, committed at `at`; the next height starts there.
    pub fn finish(&mut self, at: Instant) -> HeightTimes {
        let times = HeightTimes {
            proposal_ms: self.proposal.map(|(d, sent)| (ms(d), sent)),
            prevote_ms: self.prevote.map(ms),
            precommit_ms: self.precommit.map(ms),
            commit_ms: ms(at.saturating_duration_since(self.start)),
            busy_ms: ms(self.busy),
        };
        *self = HeightTimeline::new(at);
        times
    }
}

impl std::fmt::Display for HeightTimes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mark = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1}"));
        match self.proposal_ms {
            Some((v, true)) => write!(f, "proposal sent {v:.1}")?,
            Some((v, false)) => write!(f, "proposal received {v:.1}")?,
            None => write!(f, "no proposal with a block")?,
        }
        write!(
            f,
            ", prevote {}, precommit {}, committed {:.1} ms; host busy {:.1} ms",
            mark(self.prevote_ms),
            mark(self.precommit_ms),
            self.commit_ms,
            self.busy_ms
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_count_from_the_height_start_and_the_first_of_each_kind_stays() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut t = HeightTimeline::new(t0);
        t.proposal(at(9), false);
        t.proposal(at(30), true); // a later round's: not the height's first
        t.busy(Duration::from_millis(3));
        t.vote(VoteKind::Prevote, at(14));
        t.vote(VoteKind::Prevote, at(40));
        t.busy(Duration::from_millis(2));
        t.vote(VoteKind::Precommit, at(22));
        let times = t.finish(at(25));
        assert_eq!(times.proposal_ms, Some((9.0, false)));
        assert_eq!(times.prevote_ms, Some(14.0));
        assert_eq!(times.precommit_ms, Some(22.0));
        assert_eq!(times.commit_ms, 25.0);
        assert_eq!(times.busy_ms, 5.0);
        assert_eq!(
            times.to_string(),
            "proposal received 9.0, prevote 14.0, precommit 22.0, committed 25.0 ms; host busy 5.0 ms"
        );
        // The next height starts at the commit, with nothing marked.
        let next = t.finish(at(31));
        assert_eq!(next.commit_ms, 6.0);
        assert_eq!(next.proposal_ms, None);
        assert_eq!(next.busy_ms, 0.0);
        assert!(next
            .to_string()
            .starts_with("no proposal with a block, prevote -"));
    }
}

//! How large a block this validator proposes: the genesis limits, less after rounds
//! that failed.
//!
//! A backlog makes every proposer fill its block to the limit; when such a block cannot
//! be built, sent and checked within a round's timeouts, the round fails, and the next
//! proposer, with the same backlog, proposes just as large a block. The timeouts grow
//! by a fixed step a round, so the height can take many rounds (a 30-minute bench once
//! needed 15 rounds and 3.5 minutes for one height of 10,000 transactions) while the
//! backlog grows. So a validator that builds after a failed round halves its limits, and
//! each height decided in its first round doubles them again, up to the genesis limits.
//! Only the proposer's own choice changes: what a valid block is does not.

use cbec_consensus::Round;

/// Halvings at most: the genesis limits divided by 64 at the least.
pub const HALVINGS_MAX: u32 = 6;

/// The limits for this validator's next block (see the module comment).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockSize {
    txs_max: usize,
    bytes_max: usize,
    bytes_min: usize,
    halvings: u32,
}

impl BlockSize {
    /// At the genesis limits; never below one transaction of `bytes_min`.
    pub fn new(txs_max: usize, bytes_max: usize, bytes_min: usize) -> BlockSize {
        BlockSize {
            txs_max,
            bytes_max,
            bytes_min: bytes_min.min(bytes_max),
            halvings: 0,
        }
    }

    /// Transactions and bytes the next block may take: at least one transaction, of
    /// the largest size a transaction may have.
    pub fn limits(&self) -> (usize, usize) {
        (
            (self.txs_max >> self.halvings).max(1),
            (self.bytes_max >> self.halvings).max(self.bytes_min),
        )
    }

    /// Times the genesis limits are halved now.
    pub fn halvings(&self) -> u32 {
        self.halvings
    }

    /// This validator builds a block in `round`: after a failed round, a smaller one.
    /// True when the limits changed.
    pub fn building(&mut self, round: Round) -> bool {
        if round == 0 || self.halvings == HALVINGS_MAX {
            return false;
        }
        self.halvings += 1;
        true
    }

    /// A height was decided in `round`: in the first, the limits double again. True
    /// when they changed.
    pub fn decided(&mut self, round: Round) -> bool {
        if round != 0 || self.halvings == 0 {
            return false;
        }
        self.halvings -= 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_failed_round_halves_the_block_and_each_first_round_decision_doubles_it() {
        let mut size = BlockSize::new(10_000, 4_000_000, 1_000);
        assert!(!size.building(0), "a first round is no failure");
        assert_eq!(size.limits(), (10_000, 4_000_000));
        assert!(size.building(1));
        assert!(size.building(2));
        assert_eq!(size.limits(), (2_500, 1_000_000));
        assert!(
            !size.decided(1),
            "a later round's decision leaves the limits"
        );
        assert_eq!(size.limits(), (2_500, 1_000_000));
        assert!(size.decided(0));
        assert_eq!(size.limits(), (5_000, 2_000_000));
        assert!(size.decided(0));
        assert!(!size.decided(0), "never beyond the genesis limits");
        assert_eq!(size.limits(), (10_000, 4_000_000));
    }

    #[test]
    fn the_limits_stop_shrinking_at_a_sixty_fourth_and_one_largest_transaction() {
        let mut size = BlockSize::new(10_000, 4_000_000, 1_000);
        for round in 1..20 {
            size.building(round);
        }
        assert_eq!(size.halvings(), HALVINGS_MAX);
        assert_eq!(size.limits(), (156, 62_500));
        let mut tiny = BlockSize::new(3, 100_000, 65_536);
        for round in 1..20 {
            tiny.building(round);
        }
        assert_eq!(
            tiny.limits(),
            (1, 65_536),
            "a block can always take one transaction of any size allowed"
        );
    }
}

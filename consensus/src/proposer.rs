//! Who proposes at a height and round: weighted round-robin over voting power.
//!
//! The schedule is a pure function of the validator set, the height and the round, so
//! every validator (and a restarted one) computes the same proposer with no shared
//! state. Within one period of `total power` slots each validator proposes in as many
//! slots as it has power, spread out by smooth weighted round-robin (the interleaving
//! nginx uses) rather than in runs. Sets whose total power exceeds
//! [`SMOOTH_PERIOD_MAX`] fall back to contiguous slots.

use cbec_ledger::{PublicKey, ValidatorSet};

use crate::types::{Height, Round};

/// Largest total power for which the smooth schedule is precomputed.
pub const SMOOTH_PERIOD_MAX: u64 = 1 << 16;

#[derive(Debug, Clone)]
pub struct ProposerSchedule {
    keys: Vec<PublicKey>,
    powers: Vec<u64>,
    /// One period of the smooth schedule, as indices into `keys`; empty when the total
    /// power is too large to precompute.
    smooth: Vec<u16>,
    total: u64,
}

impl ProposerSchedule {
    pub fn new(validators: &ValidatorSet) -> ProposerSchedule {
        let keys: Vec<_> = validators.validators().iter().map(|v| v.key).collect();
        let powers: Vec<_> = validators.validators().iter().map(|v| v.power).collect();
        let total = validators.total_power();
        let smooth = if total <= SMOOTH_PERIOD_MAX {
            smooth_period(&powers, total)
        } else {
            Vec::new()
        };
        ProposerSchedule {
            keys,
            powers,
            smooth,
            total,
        }
    }

    /// `proposer(h, r)` of Algorithm 1.
    pub fn proposer(&self, height: Height, round: Round) -> PublicKey {
        let slot = height.wrapping_add(u64::from(round)) % self.total;
        if !self.smooth.is_empty() {
            return self.keys[usize::from(self.smooth[slot as usize])];
        }
        let mut remaining = slot;
        for (key, power) in self.keys.iter().zip(&self.powers) {
            if remaining < *power {
                return *key;
            }
            remaining -= power;
        }
        unreachable!("slot < total power, so some validator owns it")
    }
}

/// Smooth weighted round-robin: each step every validator gains its power, the richest
/// (lowest index on ties) proposes and pays the total.
fn smooth_period(powers: &[u64], total: u64) -> Vec<u16> {
    let mut credit = vec![0i128; powers.len()];
    (0..total)
        .map(|_| {
            for (c, p) in credit.iter_mut().zip(powers) {
                *c += i128::from(*p);
            }
            let mut best = 0;
            for i in 1..credit.len() {
                if credit[i] > credit[best] {
                    best = i;
                }
            }
            credit[best] -= i128::from(total);
            best as u16
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use cbec_ledger::{KeyPair, Validator};

    fn set(powers: &[u64]) -> ValidatorSet {
        ValidatorSet::new(
            powers
                .iter()
                .enumerate()
                .map(|(i, p)| Validator {
                    key: KeyPair::from_seed(&[i as u8 + 1; 32]).public(),
                    power: *p,
                })
                .collect(),
        )
        .expect("valid set")
    }

    #[test]
    fn equal_power_rotates_through_everyone() {
        let s = set(&[1, 1, 1, 1]);
        let schedule = ProposerSchedule::new(&s);
        let keys: Vec<_> = s.validators().iter().map(|v| v.key).collect();
        for h in 0..8u64 {
            assert_eq!(schedule.proposer(h, 0), keys[(h % 4) as usize]);
            assert_eq!(schedule.proposer(h, 1), keys[((h + 1) % 4) as usize]);
        }
    }

    #[test]
    fn slots_are_proportional_to_power_and_interleaved() {
        let s = set(&[3, 1, 2]);
        let schedule = ProposerSchedule::new(&s);
        let picks: Vec<_> = (0..6).map(|r| schedule.proposer(0, r)).collect();
        for (i, v) in s.validators().iter().enumerate() {
            let count = picks.iter().filter(|k| **k == v.key).count() as u64;
            assert_eq!(count, v.power, "validator {i}");
        }
        // Smooth: the power-3 validator never proposes three times in a row.
        assert!(picks.windows(3).all(|w| !(w[0] == w[1] && w[1] == w[2])));
    }

    #[test]
    fn huge_power_falls_back_to_contiguous_slots() {
        let s = set(&[SMOOTH_PERIOD_MAX, 1]);
        let schedule = ProposerSchedule::new(&s);
        assert_eq!(schedule.proposer(0, 0), s.validators()[0].key);
        assert_eq!(
            schedule.proposer(SMOOTH_PERIOD_MAX, 0),
            s.validators()[1].key
        );
    }
}

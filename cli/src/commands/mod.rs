pub mod genesis;
pub mod keys;

pub mod audit;
pub mod codes;
pub mod devnet;
pub mod genesis;
pub mod keys;
pub mod node;
pub mod query;
pub mod tx;

pub mod codes;
pub mod genesis;
pub mod keys;

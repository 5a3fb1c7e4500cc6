//! Test harness: the real binary, temporary contexts, and the real tools that check our output.

pub mod dockless;

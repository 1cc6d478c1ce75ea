//! The binary case and guest memory of vsock-fuzz's compiled core (`../src/lib.rs`).
mod case;
mod memory;

pub use case::*;
pub use memory::GuestMemory;

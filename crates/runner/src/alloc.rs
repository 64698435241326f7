//! The allocator both binaries run on: mimalloc, told to keep the memory it frees.
//!
//! Why: candle allocates a fresh buffer for nearly every op, megabytes each for the conv
//! layers' maps. mimalloc hands freed memory back to the OS after 10 ms by default, so every
//! step faulted its buffers in again and the kernel zeroed each page: 18.5% of a conv run's
//! samples were `clear_page_erms` (perf, 1 thread, AMD EPYC family 25 model 17). Kept, the
//! process holds its peak (what the next step allocates again) and the faults are gone.

use std::ffi::{c_int, c_long};

/// The allocator type: `#[global_allocator] static A: Allocator = Allocator {};` in a binary.
pub type Allocator = mimalloc::MiMalloc;

extern "C" {
    fn mi_option_set(option: c_int, value: c_long);
}

/// `mi_option_purge_delay` in mimalloc.h (v2 and v3 alike: the enum only grows at its end).
const MI_OPTION_PURGE_DELAY: c_int = 15;

/// Never return freed memory to the OS (purge delay −1); call first thing in `main`.
pub fn keep_freed_memory() {
    // SAFETY: mi_option_set only stores an option value; mimalloc reads it at its next purge.
    unsafe { mi_option_set(MI_OPTION_PURGE_DELAY, -1) }
}

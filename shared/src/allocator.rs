//! The global allocator of the function binaries: mimalloc, told to keep freed memory.
//!
//! Each event allocates dozens of small strings; mimalloc serves them faster than glibc. By
//! default it returns freed pages to the kernel after 10 ms, and the next invocation pays page
//! faults (the kernel zeroing pages) to get them back; in a Lambda sandbox, whose memory is
//! reserved anyway, that is pure waste. Measured in BENCHMARKS.md.

pub use mimalloc::MiMalloc as Allocator;

/// `mi_option_purge_delay` in mimalloc 2.x's `mi_option_e` (libmimalloc-sys 0.1.49 binds no
/// name for it; the crate is pinned so the index cannot drift).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Never hand freed memory back to the kernel. Call once, first thing in `main`.
pub fn retain_freed_memory() {
    // SAFETY: sets a process-wide option; mimalloc documents it as callable at any time.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) }
}

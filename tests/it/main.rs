//! The one integration-test binary. The tests of the `muster` binary need
//! the `cli` feature, those of a source or sink its own; with
//! `--no-default-features` the library's tests still run.
mod alloc;
#[cfg(feature = "cli")]
mod cli;
// The state in PostgreSQL (SPEC §9), against a throwaway cluster.
#[cfg(feature = "cluster")]
mod cluster;
mod config_doc;
#[cfg(all(feature = "cli", feature = "daemon", feature = "scim"))]
mod console;
#[cfg(all(feature = "cli", feature = "daemon"))]
mod daemon;
#[cfg(all(feature = "cli", feature = "notify"))]
mod email;
#[cfg(feature = "cli")]
mod fixtures;
#[cfg(all(feature = "cli", feature = "ftp"))]
mod ftp;
#[cfg(feature = "cli")]
mod hardening;
#[cfg(all(feature = "cli", feature = "http"))]
mod http;
mod layout;
#[cfg(feature = "cli")]
mod lifecycle;
#[cfg(all(feature = "cli", feature = "notify"))]
mod notify;
mod pipeline;
mod profile;
mod reader;
#[cfg(feature = "cli")]
mod retry;
#[cfg(feature = "cli")]
mod run;
#[cfg(all(feature = "cli", feature = "scim"))]
mod scim;
#[cfg(all(
    feature = "cli",
    feature = "scim",
    feature = "sftp",
    feature = "notify"
))]
mod secrets;
#[cfg(all(feature = "cli", feature = "sftp"))]
mod sftp;
#[cfg(feature = "cli")]
mod status;
mod store;

/// Counts allocations per thread, so a test can assert that a loop
/// allocates nothing while other tests run in parallel.
pub struct CountingAllocator;

thread_local! {
    pub static ALLOCATIONS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

// SAFETY: every call is forwarded to the system allocator with the same
// arguments; the counter is a const-initialised thread local (no lazy
// initialisation, no allocation, no destructor).
unsafe impl std::alloc::GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        ALLOCATIONS.with(|c| c.set(c.get() + 1));
        unsafe { std::alloc::System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.with(|c| c.set(c.get() + 1));
        unsafe { std::alloc::System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

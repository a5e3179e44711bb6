//! The process's allocator: jemalloc, for Rust and for the C code linked in (SQLite) alike.
//!
//! Under load a server allocates and frees small blocks from several threads at once (the
//! async workers and SQLite's one worker per connection). With glibc's malloc a fifth of the
//! leader's CPU went to `_int_malloc`, `_int_free`, `malloc_consolidate` and
//! `unlink_chunk`; with jemalloc a 64-client run committed about a fifth more creates per
//! second at the same memory after the load (BENCHMARKS.md, "Memory").

#[cfg(all(target_os = "linux", not(target_env = "msvc")))]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's settings, read once when it starts (`MALLOC_CONF` in the environment is read
/// after them and wins):
/// - `narenas:2`: one arena per core of the machines Meridian is sized for, instead of four
///   per core; each arena keeps what it once held.
/// - `dirty_decay_ms:1000`, `muzzy_decay_ms:0`: freed pages go back to the kernel within a
///   second of falling idle rather than ten, so a server's memory after a burst of writes
///   falls back to what it holds.
#[cfg(all(target_os = "linux", not(target_env = "msvc")))]
#[allow(non_upper_case_globals)]
#[export_name = "malloc_conf"]
pub static malloc_conf: &[u8; 47] = b"narenas:2,dirty_decay_ms:1000,muzzy_decay_ms:0\0";

//! How the process asks glibc to hold memory.
//!
//! glibc gives each thread that allocates under contention its own arena, up to eight per
//! core, and keeps what each arena once held. A server's threads (the async workers and
//! SQLite's one worker per connection) each end up with an arena of their own, and after a
//! burst of writes the leader kept about 64 MB instead of 49 MB with two arenas, at the same
//! CPU cost per write (BENCHMARKS.md, "Memory").

/// Arenas glibc may create: one per core of the machines Meridian is sized for.
const ARENAS: i32 = 2;

/// Caps glibc's arenas, unless `MALLOC_ARENA_MAX` says otherwise. Must run before the
/// process starts any thread.
pub fn cap_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt only sets a tunable of the allocator; no other thread exists yet,
        // so nothing allocates concurrently.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, ARENAS);
        }
    }
}

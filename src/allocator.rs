//! mimalloc's settings for a small node: its default commits whole arenas up front on
//! overcommitting systems (Linux), which took the idle server from 61 MiB (glibc) to 106 MiB;
//! without it the server idles at ~47 MiB (docs/benchmarks.md, `make bench-pods`).

use std::os::raw::{c_int, c_long};

/// `mi_option_arena_eager_commit` in mimalloc v3's `mi_option_e` (libmimalloc-sys 0.1.49,
/// pinned in Cargo.toml; the test below checks the number still names that option).
const ARENA_EAGER_COMMIT: c_int = 4;

/// Applies orch's allocator settings. It must run before the first allocation, which
/// reserves mimalloc's first arena — i.e. before Rust's runtime starts `main` —, so it is a
/// constructor in `.init_array` (what the `ctor` crate does), run by the loader.
extern "C" fn tune() {
    // SAFETY: setting an option is a plain store into mimalloc's option table; nothing else
    // runs yet.
    unsafe { libmimalloc_sys::mi_option_set(ARENA_EAGER_COMMIT, 0 as c_long) };
}

#[used]
#[link_section = ".init_array"]
static TUNE: extern "C" fn() = tune;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_option_number_names_arena_eager_commit() {
        // The constructor set it to 0 (its default is 2, "on overcommit systems"); no
        // neighbouring option is 0 and 2 by default.
        let value = unsafe { libmimalloc_sys::mi_option_get(ARENA_EAGER_COMMIT) };
        assert_eq!(value, 0);
        let neighbours = [3, 5].map(|o| unsafe { libmimalloc_sys::mi_option_get(o) });
        assert!(!neighbours.contains(&2) && !neighbours.contains(&0), "{neighbours:?}");
    }
}

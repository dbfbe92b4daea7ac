//! mimalloc's settings for a small node: its default commits whole arenas up front on
//! overcommitting systems (Linux), which took the idle server from 61 MiB (glibc) to 106 MiB;
//! without it the server idles at ~47 MiB (docs/benchmarks.md, `make bench-pods`).

use std::os::raw::{c_int, c_long};

/// `mi_option_arena_eager_commit` in mimalloc v3's `mi_option_e` (libmimalloc-sys 0.1.49,
/// pinned in Cargo.toml; the test below checks the number still names that option).
const ARENA_EAGER_COMMIT: c_int = 4;

/// Applies orch's allocator settings; call first thing in `main`.
pub fn tune() {
    // SAFETY: setting an option is a plain store into mimalloc's option table.
    unsafe { libmimalloc_sys::mi_option_set(ARENA_EAGER_COMMIT, 0 as c_long) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_option_number_names_arena_eager_commit() {
        // Its default is 2 ("on overcommit systems"); no neighbouring option defaults to 2.
        let default = unsafe { libmimalloc_sys::mi_option_get(ARENA_EAGER_COMMIT) };
        assert_eq!(default, 2);
        let neighbours = [3, 5].map(|o| unsafe { libmimalloc_sys::mi_option_get(o) });
        assert!(!neighbours.contains(&2), "{neighbours:?}");
    }
}

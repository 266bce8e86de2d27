//! Resource limits a helper process sets on itself.

use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};

/// Raise this process's soft descriptor limit as far as `want` (or the
/// hard limit); returns the soft limit now in force.
pub fn raise_nofile(want: u64) -> u64 {
    let l = getrlimit(Resource::Nofile);
    let soft = l.current.unwrap_or(u64::MAX);
    let target = want.min(l.maximum.unwrap_or(u64::MAX));
    if soft >= target {
        return soft;
    }
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: Some(target),
            maximum: l.maximum,
        },
    )
    .expect("raise RLIMIT_NOFILE");
    target
}

/// Set this process's soft descriptor limit to `n` (within the hard one),
/// lower or higher.
pub fn set_nofile(n: u64) {
    let mut l = getrlimit(Resource::Nofile);
    l.current = Some(l.maximum.map_or(n, |m| m.min(n)));
    setrlimit(Resource::Nofile, l).expect("setrlimit");
}

/// Cap this process's address space at its current size plus `headroom`
/// bytes (within the hard limit).
pub fn limit_address_space(headroom: u64) {
    let kib = super::proc_stats::status_field("self", "VmSize:");
    let max = getrlimit(Resource::As).maximum;
    let want = kib * 1024 + headroom;
    setrlimit(
        Resource::As,
        Rlimit {
            current: Some(max.map_or(want, |m| m.min(want))),
            maximum: max,
        },
    )
    .unwrap();
}

//! Process limits lbd sets for itself at start.
use tracing::{info, warn};

/// Raises the soft limit on open files to the hard one (HAProxy does the
/// same from its `maxconn`): health checks, control connections and
/// netlink sockets all need descriptors, and the soft default (often
/// 1024) is an accident of the service manager, not a choice.
pub(super) fn raise_nofile() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid rlimit for the call to fill.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        warn!(
            "reading the open-file limit: {}",
            std::io::Error::last_os_error()
        );
        return;
    }
    if limit.rlim_cur >= limit.rlim_max {
        return;
    }
    let from = limit.rlim_cur;
    limit.rlim_cur = limit.rlim_max;
    // SAFETY: `limit` is a valid rlimit, read by the call.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } == 0 {
        info!(from, to = limit.rlim_max, "raised the open-file limit");
    } else {
        warn!(
            from,
            hard = limit.rlim_max,
            "raising the open-file limit: {}",
            std::io::Error::last_os_error()
        );
    }
}

//! The open-descriptor limit (RLIMIT_NOFILE): raised from its soft value to the hard one at
//! start-up, since every connection, probe and SQLite file takes a descriptor and distributions
//! often leave the soft limit at 1,024 (or 256) while allowing far more.
//!
//! Owns the getrlimit/setrlimit calls, the one start-up line about them, and the arithmetic of
//! fitting a connection cap under the limit ([`fit_cap`]); it must not decide how many
//! descriptors a server keeps back. The registry, the gateway and every agent call it at
//! start-up.

use std::io;

/// The soft and hard RLIMIT_NOFILE now.
// rlim_t is u64 on Linux but not on every target.
#[allow(clippy::unnecessary_cast)]
pub fn nofile_limit() -> io::Result<(u64, u64)> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit through a valid pointer to a local.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((limit.rlim_cur as u64, limit.rlim_max as u64))
}

/// Raises the soft RLIMIT_NOFILE to the hard limit; returns (before, after).
#[allow(clippy::unnecessary_cast)]
pub fn raise_nofile_limit() -> io::Result<(u64, u64)> {
    let (soft, hard) = nofile_limit()?;
    if soft >= hard {
        return Ok((soft, soft));
    }
    let limit = libc::rlimit {
        rlim_cur: hard as libc::rlim_t,
        rlim_max: hard as libc::rlim_t,
    };
    // SAFETY: setrlimit reads one rlimit through a valid pointer to a local.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((soft, hard))
}

/// [`raise_nofile_limit`], logged (INFO with the limit before and after, or WARN with the
/// error); returns the soft limit now in force, if it could be read.
pub fn raise_nofile_limit_logged() -> Option<u64> {
    match raise_nofile_limit() {
        Ok((before, after)) => {
            tracing::info!(before, after, "RLIMIT_NOFILE");
            Some(after)
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot raise RLIMIT_NOFILE");
            nofile_limit().ok().map(|(soft, _)| soft)
        }
    }
}

/// A connection cap of `requested`, or fewer: at most `nofile` less the `kept` descriptors a
/// server needs for everything else, and at least 1.
pub fn fit_cap(requested: usize, nofile: u64, kept: u64) -> usize {
    let fit = usize::try_from(nofile.saturating_sub(kept)).unwrap_or(usize::MAX);
    requested.min(fit).max(1)
}

#[cfg(test)]
mod tests;

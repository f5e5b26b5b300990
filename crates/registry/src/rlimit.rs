//! The open-descriptor limit (RLIMIT_NOFILE): raised from its soft value to the hard one at
//! start-up, since every connection, probe and SQLite file takes a descriptor and distributions
//! often leave the soft limit at 1,024 (or 256) while allowing far more.
//!
//! Owns the getrlimit/setrlimit calls only; callers log the outcome. The gateway and agents can
//! call the same function.

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

#[cfg(test)]
mod tests {
    #[test]
    fn the_soft_limit_reaches_the_hard_one() {
        let (_, after) = super::raise_nofile_limit().unwrap();
        let (soft, hard) = super::nofile_limit().unwrap();
        assert_eq!((soft, after), (hard, hard));
    }
}

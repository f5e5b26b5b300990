//! The TCP connections a process holds, from `/proc`: its socket descriptors
//! (`/proc/<pid>/fd/*` → `socket:[inode]`) matched against the kernel's tables
//! (`/proc/net/tcp`, `/proc/net/tcp6`). What a test counts to say a connection was opened or
//! closed, without asking the process. (`benches/support` reads the same tables for the
//! benches; a bench and the e2e tests are separate crates that share no module.)

use std::collections::HashSet;

/// The local ports of the ESTABLISHED connections process `pid` holds to remote port `port`
/// (sorted): a connection closed and opened again shows as another port.
pub fn established_to(pid: u32, port: u16) -> Vec<u16> {
    let inodes: HashSet<u64> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("list the process's descriptors")
        .filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
        .filter_map(|link| {
            let link = link.to_string_lossy().into_owned();
            link.strip_prefix("socket:[")?
                .strip_suffix(']')?
                .parse()
                .ok()
        })
        .collect();
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|table| std::fs::read_to_string(table).ok())
        .flat_map(|table| {
            table
                .lines()
                .skip(1)
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .filter_map(|row| {
            // sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode
            let fields: Vec<&str> = row.split_whitespace().collect();
            let port_of = |addr: &str| {
                let (_, hex) = addr.rsplit_once(':')?;
                u16::from_str_radix(hex, 16).ok()
            };
            let established = fields.get(3) == Some(&"01");
            let inode = fields.get(9)?.parse::<u64>().ok()?;
            (established && port_of(fields.get(2)?) == Some(port) && inodes.contains(&inode))
                .then(|| port_of(fields.get(1)?))
                .flatten()
        })
        .collect::<std::collections::BTreeSet<u16>>()
        .into_iter()
        .collect()
}

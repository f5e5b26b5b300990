//! The TCP connections a process holds, from `/proc`: its socket descriptors
//! (`/proc/<pid>/fd/*` → `socket:[inode]`) matched against the kernel's tables
//! (`/proc/net/tcp`, `/proc/net/tcp6`). What a test counts to say a connection was opened or
//! closed, without asking the process.

use std::collections::HashSet;

/// How many ESTABLISHED connections process `pid` holds to remote port `port`.
pub fn established_to(pid: u32, port: u16) -> usize {
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
        .filter(|row| {
            // sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode
            let fields: Vec<&str> = row.split_whitespace().collect();
            let remote_port = fields
                .get(2)
                .and_then(|addr| addr.rsplit_once(':'))
                .and_then(|(_, hex)| u16::from_str_radix(hex, 16).ok());
            let established = fields.get(3) == Some(&"01");
            let inode = fields.get(9).and_then(|inode| inode.parse::<u64>().ok());
            established
                && remote_port == Some(port)
                && inode.is_some_and(|inode| inodes.contains(&inode))
        })
        .count()
}

use super::*;

const MB: usize = 1024 * 1024;

#[test]
fn a_trim_is_due_when_free_memory_grew_past_the_threshold_since_the_last() {
    let mut trimmer = Trimmer::default();
    assert!(
        !trimmer.look(THRESHOLD),
        "8 MiB free from the start: not yet"
    );
    assert!(trimmer.look(THRESHOLD + 1));
    trimmer.trimmed(20 * MB);
    // Still free after the trim (no longer resident): nothing new.
    assert!(!trimmer.look(20 * MB));
    assert!(!trimmer.look(25 * MB));
    // Reused, then let go again: the growth counts from the lowest reading.
    assert!(!trimmer.look(5 * MB));
    assert!(trimmer.look(14 * MB));
}

/// How many of the whole pages inside `[start, start + len)` are resident (`mincore`).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn resident_pages(start: usize, len: usize) -> (usize, usize) {
    // SAFETY: sysconf only reads a constant.
    let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).expect("page size");
    let first = start.div_ceil(page) * page;
    let end = (start + len) / page * page;
    if end <= first {
        return (0, 0);
    }
    let pages = (end - first) / page;
    let mut vec = vec![0u8; pages];
    // SAFETY: the range is page-aligned and was mapped by malloc (mincore fails with ENOMEM
    // otherwise, which the assertion below reports); `vec` has one byte per page.
    let rc = unsafe { libc::mincore(first as *mut libc::c_void, end - first, vec.as_mut_ptr()) };
    assert_eq!(rc, 0, "mincore: {}", std::io::Error::last_os_error());
    (vec.iter().filter(|&&b| b & 1 == 1).count(), pages)
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[test]
fn a_trim_gives_back_the_pages_of_memory_freed_below_live_blocks() {
    // 32 MiB in 64 KiB blocks (under malloc's mmap threshold), written so every page is
    // resident; every other block freed: 16 MiB of holes below live blocks, which free() does
    // not give back. Only the freed blocks' own pages are looked at (not the process's RSS,
    // which other tests on other threads move).
    const BLOCK: usize = 64 * 1024;
    let mut blocks: Vec<Vec<u8>> = (0..512).map(|_| vec![1u8; BLOCK]).collect();
    let freed: Vec<usize> = blocks
        .iter()
        .skip(1)
        .step_by(2)
        .map(|b| b.as_ptr() as usize)
        .collect();
    let mut kept = Vec::new();
    for (i, block) in blocks.drain(..).enumerate() {
        if i % 2 == 0 {
            kept.push(block);
        }
    }
    let count = |blocks: &[usize]| {
        blocks.iter().fold((0, 0), |(resident, all), &start| {
            let (r, a) = resident_pages(start, BLOCK);
            (resident + r, all + a)
        })
    };
    let (before, pages) = count(&freed);
    assert!(
        before * 10 >= pages * 9,
        "{before} of {pages} freed pages resident before"
    );
    trim();
    let (after, _) = count(&freed);
    assert!(
        after * 2 <= pages,
        "{after} of {pages} pages of the freed blocks still resident after the trim"
    );
    drop(kept);
}

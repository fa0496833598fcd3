//! The C allocator's settings for a serving process. glibc grows a thread's heap a little
//! at a time (`mprotect`), and maps and unmaps big blocks (`mmap`, `munmap`): each takes the
//! process's memory-map lock for writing, so it waits for every holder of it, such as a
//! thread faulting in a table or preempted in a page fault. Measured: the gateway blocked
//! about 10 ms each, 29 times in a row, growing its heap while the snapshotter faulted its
//! engine in at start (a 300 ms stall). Grown in large steps, never trimmed, with blocks
//! below 32 MiB taken from the heap, the hot path stops taking that lock after its first
//! few steps; the memory stays bounded by what the limits allow, and it is kept.

/// Heap growth per step, and the block size from which `mmap` serves an allocation.
const TOP_PAD: i32 = 64 << 20;
const MMAP_THRESHOLD: i32 = 32 << 20;

/// Apply the settings (to every later heap growth; calling it again changes nothing). Where
/// the allocator is not glibc's, nothing is done.
pub fn tune() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; glibc documents these three.
    unsafe {
        libc::mallopt(libc::M_TOP_PAD, TOP_PAD);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
    }
}

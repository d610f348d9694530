//! Host-visible buffers: the only memory the host (kernel, device) may read or write.
//!
//! A region of `slots` 4 KiB slots, mapped with mmap so it is page aligned (as
//! O_DIRECT and io_uring registered buffers need). Nothing outside this module gets
//! a reference into it: data moves in and out by copy, so what we check is what we
//! use, whatever the host does to the region meanwhile.

use crate::{BLOCK_SIZE, HostCall, HostError, Result, count};
use rustix::mm::{MapFlags, ProtFlags};
use std::ptr::NonNull;

/// A page-aligned region of 4 KiB slots that the host can see.
#[derive(Debug)]
pub struct HostBuffers {
    base: NonNull<u8>,
    slots: usize,
}

// SAFETY: the region is plain memory owned by this value; all access goes through
// `&self`/`&mut self` methods that copy, so moving it to another thread is sound.
unsafe impl Send for HostBuffers {}
// SAFETY: shared access only ever reads by copy; writes need `&mut self`.
unsafe impl Sync for HostBuffers {}

impl HostBuffers {
    /// Maps `slots` zeroed slots of 4 KiB.
    pub fn new(slots: usize) -> Result<Self> {
        let slots = slots.max(1);
        let len = slots.checked_mul(BLOCK_SIZE).ok_or_else(|| {
            HostError::new("host buffers", std::io::Error::other("too many slots"))
        })?;
        count(HostCall::Mmap);
        // SAFETY: an anonymous private mapping with a null hint creates new memory and
        // touches nothing that exists.
        let ptr = unsafe {
            rustix::mm::mmap_anonymous(
                std::ptr::null_mut(),
                len,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::PRIVATE | MapFlags::POPULATE,
            )
        }
        .map_err(|e| HostError::new("mmap host buffers", e.into()))?;
        let base = NonNull::new(ptr.cast::<u8>()).ok_or_else(|| {
            HostError::new("mmap host buffers", std::io::Error::other("null mapping"))
        })?;
        Ok(Self { base, slots })
    }

    /// Number of 4 KiB slots.
    pub fn slots(&self) -> usize {
        self.slots
    }

    /// Length of the region in bytes.
    pub fn len_bytes(&self) -> usize {
        self.slots * BLOCK_SIZE
    }

    /// Address of a slot, for handing to the host (io_uring, pread). `None` if out of range.
    pub(crate) fn slot_ptr(&self, slot: usize) -> Option<*mut u8> {
        if slot >= self.slots {
            return None;
        }
        // SAFETY: slot < slots, so the offset stays inside the mapping of slots*4096 bytes.
        Some(unsafe { self.base.as_ptr().add(slot * BLOCK_SIZE) })
    }

    pub(crate) fn base_ptr(&self) -> *mut u8 {
        self.base.as_ptr()
    }

    /// Copies `src` (at most 4 KiB) into a slot, at offset 0.
    pub fn copy_in(&mut self, slot: usize, src: &[u8]) -> Result<()> {
        let dst = self.checked(slot, src.len())?;
        // SAFETY: `dst` points to `src.len()` <= 4096 writable bytes inside our mapping
        // (checked above); `src` is ordinary Rust memory, so the ranges cannot overlap.
        unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), dst, src.len()) };
        Ok(())
    }

    /// Copies a slot's first `dst.len()` bytes (at most 4 KiB) out into `dst`.
    ///
    /// The host may change the slot at any time; the copy is what callers check and use.
    pub fn copy_out(&self, slot: usize, dst: &mut [u8]) -> Result<()> {
        let src = self.checked(slot, dst.len())?;
        // SAFETY: `src` points to `dst.len()` <= 4096 readable bytes inside our mapping
        // (checked above); `dst` is ordinary Rust memory, so the ranges cannot overlap.
        // We hold no reference into the mapping, so a concurrent host write can at
        // worst make the copy torn, which the caller's authentication rejects.
        unsafe { std::ptr::copy_nonoverlapping(src, dst.as_mut_ptr(), dst.len()) };
        Ok(())
    }

    /// Copies `dst.len()` bytes from `offset` inside a slot (the range must stay in
    /// the slot).
    pub fn copy_out_at(&self, slot: usize, offset: usize, dst: &mut [u8]) -> Result<()> {
        let end = offset.checked_add(dst.len()).filter(|&e| e <= BLOCK_SIZE);
        if end.is_none() {
            return Err(HostError::new(
                "host buffer copy",
                std::io::Error::other(format!("{} bytes at {offset} cross the slot", dst.len())),
            ));
        }
        let src = self.checked(slot, 0)?;
        // SAFETY: offset + dst.len() <= 4096 (checked above) and the slot exists, so
        // the source range lies inside our mapping; `dst` is ordinary Rust memory, so
        // the ranges cannot overlap. As in `copy_out`, the host may change the bytes
        // meanwhile; what was copied is what the caller checks.
        unsafe {
            std::ptr::copy_nonoverlapping(src.wrapping_add(offset), dst.as_mut_ptr(), dst.len())
        };
        Ok(())
    }

    /// Does any slot contain `needle`? (For tests that prove plaintext never reaches the host.)
    pub fn contains(&self, needle: &[u8]) -> bool {
        if needle.is_empty() {
            return true;
        }
        let mut slot = vec![0u8; BLOCK_SIZE];
        (0..self.slots).any(|i| {
            self.copy_out(i, &mut slot).is_ok() && slot.windows(needle.len()).any(|w| w == needle)
        })
    }

    fn checked(&self, slot: usize, len: usize) -> Result<*mut u8> {
        if len > BLOCK_SIZE {
            return Err(HostError::new(
                "host buffer copy",
                std::io::Error::other(format!("{len} bytes do not fit a 4 KiB slot")),
            ));
        }
        self.slot_ptr(slot).ok_or_else(|| {
            HostError::new(
                "host buffer copy",
                std::io::Error::other(format!("slot {slot} out of range ({} slots)", self.slots)),
            )
        })
    }
}

impl Drop for HostBuffers {
    fn drop(&mut self) {
        count(HostCall::Mmap);
        // SAFETY: base/len describe exactly the mapping made in `new`, which nothing
        // references any more (we own it and are being dropped). Any io_uring that
        // registered it holds a field declared before it, so it is gone already.
        let _ = unsafe { rustix::mm::munmap(self.base.as_ptr().cast(), self.len_bytes()) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_round_trip_and_bounds() {
        let mut b = HostBuffers::new(3).unwrap();
        assert_eq!(b.slots(), 3);
        let data = [7u8; BLOCK_SIZE];
        b.copy_in(2, &data).unwrap();
        let mut out = [0u8; BLOCK_SIZE];
        b.copy_out(2, &mut out).unwrap();
        assert_eq!(out, data);
        assert!(b.copy_in(3, &data).is_err());
        assert!(b.copy_out(9, &mut out).is_err());
        assert!(b.copy_in(0, &[0u8; BLOCK_SIZE + 1]).is_err());
        assert!(b.contains(&[7, 7, 7]));
        assert!(!b.contains(b"canary"));
        assert_eq!(b.base_ptr() as usize % BLOCK_SIZE, 0);
    }
}

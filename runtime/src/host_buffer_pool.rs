//! Host buffers handed back by finished weight transfers, reused for the next converted or
//! LoRA-merged weight. On the machines measured a fresh page costs more than the conversion that
//! fills it (a bf16 -> bf16 copy of a 27.5 MB weight into new memory: 32 ms, ~0.9 GB/s, nearly all
//! page faults), and with vidlower's fixed mmap threshold every large `Vec` is fresh pages.

/// Free buffers, up to a byte budget.
pub struct HostBufferPool {
    free: Vec<Vec<u8>>,
    max_bytes: usize,
}

impl HostBufferPool {
    /// A pool that keeps up to `max_bytes` of free buffers (0: keeps none).
    pub fn new(max_bytes: usize) -> Self {
        HostBufferPool { free: Vec::new(), max_bytes }
    }

    /// A buffer of `len` bytes with unspecified contents (the caller overwrites all of it): the
    /// smallest free one that holds `len`, else the largest, grown, else a new one.
    pub fn take(&mut self, len: usize) -> Vec<u8> {
        let fits = (0..self.free.len()).filter(|&i| self.free[i].capacity() >= len).min_by_key(|&i| self.free[i].capacity());
        let pick = fits.or_else(|| (0..self.free.len()).max_by_key(|&i| self.free[i].capacity()));
        let mut v = pick.map(|i| self.free.swap_remove(i)).unwrap_or_default();
        // Only bytes beyond the old length are written here (zeros); the rest keep old values.
        v.truncate(len);
        v.resize(len, 0);
        v
    }

    /// Keeps `v` for a later [`take`](Self::take) if the budget allows.
    pub fn give(&mut self, v: Vec<u8>) {
        let held: usize = self.free.iter().map(Vec::capacity).sum();
        if v.capacity() > 0 && held + v.capacity() <= self.max_bytes {
            self.free.push(v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reuses_the_smallest_that_fits_within_budget() {
        let mut pool = HostBufferPool::new(100);
        pool.give(vec![1; 40]);
        pool.give(vec![2; 20]);
        pool.give(vec![3; 50]); // over the budget: dropped
        let a = pool.take(15);
        assert_eq!((a.len(), a[0]), (15, 2));
        let b = pool.take(60); // none holds 60: the largest (40), grown
        assert_eq!((b.len(), b[0], b[59]), (60, 1, 0));
        assert!(pool.take(10).capacity() >= 10);
        let mut none = HostBufferPool::new(0);
        none.give(vec![0; 8]);
        assert_eq!(none.free.len(), 0);
    }
}

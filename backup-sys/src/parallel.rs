//! Two small helpers for work spread over threads, written once instead of
//! by each caller: [`InOrder`] puts numbered results back in order, and
//! [`for_each_in_runs`] shares a slice among scoped threads.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Yields the items of an iterator of `(sequence number, item)` pairs in
/// sequence order, from `first` on, holding back those that arrive early.
/// When the source ends, whatever is still held comes out in order.
///
/// ```
/// use backup_sys::InOrder;
/// let out: Vec<char> = InOrder::new([(2, 'b'), (3, 'c'), (1, 'a')], 1).collect();
/// assert_eq!(out, ['a', 'b', 'c']);
/// ```
pub struct InOrder<I: Iterator<Item = (u64, T)>, T> {
    inner: I,
    next: u64,
    waiting: BTreeMap<u64, T>,
    done: bool,
}

impl<I: Iterator<Item = (u64, T)>, T> InOrder<I, T> {
    /// Reorders `inner`, whose first sequence number is `first`.
    pub fn new(inner: impl IntoIterator<IntoIter = I>, first: u64) -> Self {
        InOrder {
            inner: inner.into_iter(),
            next: first,
            waiting: BTreeMap::new(),
            done: false,
        }
    }
}

impl<I: Iterator<Item = (u64, T)>, T> Iterator for InOrder<I, T> {
    type Item = T;

    fn next(&mut self) -> Option<T> {
        loop {
            if let Some(item) = self.waiting.remove(&self.next) {
                self.next += 1;
                return Some(item);
            }
            if self.done {
                return self.waiting.pop_first().map(|(_, item)| item);
            }
            match self.inner.next() {
                Some((seq, item)) => {
                    self.waiting.insert(seq, item);
                }
                None => self.done = true,
            }
        }
    }
}

/// Calls `f(index, item)` for every item of `items` on `threads` scoped
/// threads (at least one). Each thread takes `run` consecutive items at a
/// time, so neighbours (one folder's files, say) mostly stay on one thread.
pub fn for_each_in_runs<T: Sync>(
    items: &[T],
    threads: usize,
    run: usize,
    f: impl Fn(usize, &T) + Sync,
) {
    let run = run.max(1);
    let next = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..threads.max(1) {
            s.spawn(|| loop {
                let start = next.fetch_add(run, Ordering::Relaxed);
                if start >= items.len() {
                    return;
                }
                let end = (start + run).min(items.len());
                for (i, item) in items[start..end].iter().enumerate() {
                    f(start + i, item);
                }
            });
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_holds_back_early_items_and_flushes_gaps_at_the_end() {
        let out: Vec<u32> = InOrder::new([(3, 30), (1, 10), (5, 50), (2, 20)], 1).collect();
        assert_eq!(out, [10, 20, 30, 50]);
    }

    #[test]
    fn every_item_is_visited_once() {
        let items: Vec<usize> = (0..1000).collect();
        let seen: Vec<AtomicUsize> = (0..1000).map(|_| AtomicUsize::new(0)).collect();
        for_each_in_runs(&items, 3, 7, |i, &v| {
            assert_eq!(i, v);
            seen[i].fetch_add(1, Ordering::Relaxed);
        });
        assert!(seen.iter().all(|n| n.load(Ordering::Relaxed) == 1));
        for_each_in_runs(&[] as &[u8], 4, 0, |_, _| panic!("no items"));
    }
}

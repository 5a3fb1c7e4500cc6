//! Work spread over a few threads with results kept in order: the one pattern the builder
//! uses to keep every core busy (walking directories, reading file details, writing layers).

use std::sync::atomic::{AtomicUsize, Ordering};

/// How many threads to use: one per core.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// `work` applied to every item, up to `threads` items at a time, in the items' order. `None`
/// if a worker thread died (a panic), so that the caller can report it as an error.
pub fn map_in_order<T, R, F>(items: &[T], threads: usize, work: F) -> Option<Vec<R>>
where
    T: Sync,
    R: Send,
    F: Fn(&T) -> R + Sync,
{
    let next = AtomicUsize::new(0);
    let mut done: Vec<(usize, R)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads.clamp(1, items.len().max(1)))
            .map(|_| {
                scope.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(item) = items.get(i) else { break };
                        done.push((i, work(item)));
                    }
                    done
                })
            })
            .collect();
        // Every worker joined before looking at any: one left unjoined would make the scope
        // itself panic if it died too.
        let joined: Vec<_> = workers.into_iter().map(|worker| worker.join()).collect();
        let mut all = Vec::with_capacity(items.len());
        for worker in joined {
            all.extend(worker.ok()?);
        }
        Some(all)
    })?;
    done.sort_by_key(|(i, _)| *i);
    Some(done.into_iter().map(|(_, result)| result).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_come_in_order_whatever_the_threads() {
        let items: Vec<u64> = (0..1000).collect();
        for threads in [1, 2, 7] {
            let squares = map_in_order(&items, threads, |n| n * n).unwrap();
            assert_eq!(squares, items.iter().map(|n| n * n).collect::<Vec<_>>());
        }
        assert_eq!(map_in_order(&[] as &[u8], 4, |b| *b), Some(Vec::new()));
    }

    #[test]
    fn a_worker_that_dies_is_reported() {
        let items = [1, 2, 3];
        let outcome = map_in_order(&items, 2, |n| {
            assert_ne!(*n, 2, "a deliberate panic in a worker");
            *n
        });
        assert_eq!(outcome, None);
    }
}

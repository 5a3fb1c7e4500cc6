//! Work spread over a few threads with results kept in order: the one pattern the builder
//! uses to keep every core busy (walking directories, reading file details, writing layers);
//! one budget of compression threads shared by every layer written at once; and work run at a
//! lower priority, so that it does not starve what drains it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, OnceLock};

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

/// A number of threads shared by work that runs side by side: each piece takes what it can use
/// and gives it back when done, so that together they never run more than the budget holds.
/// (Layers written at once each compress with a pool of threads: without one budget, `cores`
/// writers each starting `cores` compressors would run `cores²` threads.)
pub struct ThreadBudget {
    free: Mutex<usize>,
    returned: Condvar,
}

/// Threads taken from a [`ThreadBudget`], given back when dropped.
#[must_use = "the threads go back to the budget when this is dropped"]
pub struct Threads<'a> {
    budget: &'a ThreadBudget,
    count: usize,
}

impl ThreadBudget {
    pub fn new(total: usize) -> Self {
        ThreadBudget {
            free: Mutex::new(total.max(1)),
            returned: Condvar::new(),
        }
    }

    /// Up to `wanted` threads (at least one): waits while none is free, then takes as many of
    /// those free as wanted. Who holds threads never waits for more, so waiting always ends.
    pub fn take(&self, wanted: usize) -> Threads<'_> {
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        while *free == 0 {
            free = self.returned.wait(free).unwrap_or_else(|e| e.into_inner());
        }
        let count = wanted.clamp(1, *free);
        *free -= count;
        Threads {
            budget: self,
            count,
        }
    }
}

impl Threads<'_> {
    pub fn count(&self) -> usize {
        self.count
    }
}

impl Drop for Threads<'_> {
    fn drop(&mut self) {
        let mut free = self.budget.free.lock().unwrap_or_else(|e| e.into_inner());
        *free += self.count;
        self.budget.returned.notify_all();
    }
}

/// The process's compression threads: one per core, shared by every layer being written.
pub fn compression_threads() -> &'static ThreadBudget {
    static BUDGET: OnceLock<ThreadBudget> = OnceLock::new();
    BUDGET.get_or_init(|| ThreadBudget::new(cores()))
}

/// How much a yielding thread lowers its scheduling priority (added to its nice value).
const YIELDING_NICE: i32 = 10;

/// Runs `work` on a thread of its own at a lower scheduling priority, which the threads it
/// starts inherit (on Linux a thread's nice value is its own, copied to the threads it makes).
///
/// A push writes layers while it uploads them, and compression can always use every core: at
/// equal priority it takes the CPU from what drains it, the uploads and a registry on the same
/// machine (a CI service container, say), whose ingest then falls behind and finishes after
/// the build instead of beside it. Yielding costs nothing on an otherwise idle machine.
pub fn run_yielding<R: Send>(work: impl FnOnce() -> R + Send) -> R {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                lower_priority(YIELDING_NICE);
                work()
            })
            .join()
    })
    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

/// Adds `by` to the calling thread's nice value (at most 19); a refusal only costs speed.
#[cfg(target_os = "linux")]
fn lower_priority(by: i32) {
    // SAFETY: plain system calls about the calling thread, with no pointers involved.
    unsafe {
        let thread = libc::gettid() as libc::id_t;
        // -1 is also a valid priority, so errno tells a failure apart.
        *libc::__errno_location() = 0;
        let current = libc::getpriority(libc::PRIO_PROCESS, thread);
        if current == -1 && *libc::__errno_location() != 0 {
            return;
        }
        if libc::setpriority(libc::PRIO_PROCESS, thread, (current + by).min(19)) != 0 {
            tracing::debug!(error = %std::io::Error::last_os_error(), "could not lower the build's priority");
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn lower_priority(_by: i32) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(target_os = "linux")]
    fn yielding_work_runs_lower_and_leaves_the_caller_as_it_was() {
        fn nice() -> i32 {
            // SAFETY: a read of the calling thread's own priority.
            unsafe { libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t) }
        }
        let before = nice();
        let (inside, in_a_child) = run_yielding(|| {
            let child = std::thread::spawn(nice).join().unwrap();
            (nice(), child)
        });
        assert_eq!(inside, (before + YIELDING_NICE).min(19));
        assert_eq!(
            in_a_child, inside,
            "threads started by the work inherit its priority"
        );
        assert_eq!(nice(), before, "the calling thread keeps its priority");
        assert_eq!(run_yielding(|| 7), 7);
    }

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
    fn a_thread_budget_is_never_overdrawn_and_everyone_gets_a_thread() {
        let budget = ThreadBudget::new(4);
        let (taken, peak) = (AtomicUsize::new(0), AtomicUsize::new(0));
        let takers: Vec<usize> = (0..16).collect();
        let counts = map_in_order(&takers, 16, |i| {
            let threads = budget.take(1 + i % 5);
            let now = taken.fetch_add(threads.count(), Ordering::SeqCst) + threads.count();
            peak.fetch_max(now, Ordering::SeqCst);
            std::thread::sleep(std::time::Duration::from_millis(2));
            taken.fetch_sub(threads.count(), Ordering::SeqCst);
            threads.count()
        })
        .unwrap();
        assert!(peak.load(Ordering::SeqCst) <= 4, "{peak:?}");
        assert!(counts.iter().all(|&c| (1..=4).contains(&c)), "{counts:?}");
        assert_eq!(budget.take(10).count(), 4, "all given back");
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

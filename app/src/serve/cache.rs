//! The server's in-memory copy of the stored results it reads most, kept current by following
//! the store's revisions.
//!
//! A hit is answered from memory on the async worker (no store read at all). A follower task
//! reads the rows written since the last revision it saw, every `[serve] follow_ms`, and drops
//! their cached copies, so a result a job rewrites is served as rewritten within that time.
//!
//! A reader that misses, reads the row and inserts it could race with the follower dropping a
//! newer write of that row: each batch of drops first bumps a generation, and an insert made
//! while the generation moved is dropped again (a later miss reads the row anew).

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Once, Weak};
use std::time::Duration;

use recgpt_pipeline::results::{ResultStore, ResultsError, StoredUser};

use super::{AppState, Served};

/// Decoded results by user id, weighed by their stored JSON's size.
#[derive(Debug)]
pub(super) struct UserCache {
    entries: quick_cache::sync::Cache<String, CachedUser, ByStoredSize>,
    /// Bumped before each batch of drops.
    generation: AtomicU64,
    /// The highest revision the follower has seen.
    seen: AtomicI64,
    follow: Duration,
    following: Once,
}

/// A decoded result and the size of its stored JSON.
#[derive(Debug, Clone)]
struct CachedUser {
    bytes: u64,
    result: Arc<Served>,
}

/// An entry's weight: its stored JSON's bytes.
#[derive(Debug, Clone)]
struct ByStoredSize;

impl quick_cache::Weighter<String, CachedUser> for ByStoredSize {
    fn weight(&self, _: &String, cached: &CachedUser) -> u64 {
        cached.bytes.max(1)
    }
}

impl UserCache {
    /// A cache of `mb` MB of stored JSON (`None` when 0) following `results` from its current
    /// revision; the estimate of entries assumes results of about 16 kB.
    pub fn new(
        results: &ResultStore,
        mb: usize,
        follow_ms: u64,
    ) -> Result<Option<Self>, ResultsError> {
        let bytes = (mb as u64) << 20;
        if bytes == 0 {
            return Ok(None);
        }
        Ok(Some(Self {
            entries: quick_cache::sync::Cache::with_weighter(
                (bytes >> 14).max(16) as usize,
                bytes,
                ByStoredSize,
            ),
            generation: AtomicU64::new(0),
            seen: AtomicI64::new(results.max_revision()?),
            follow: Duration::from_millis(follow_ms.max(1)),
            following: Once::new(),
        }))
    }

    /// The cached result of `user`; starts the follower on first use (inside the runtime).
    pub fn get(&self, state: &Arc<AppState>, user: &str) -> Option<Arc<Served>> {
        self.following.call_once(|| {
            tokio::spawn(follow(Arc::downgrade(state), self.follow));
        });
        self.entries.get(user).map(|c| c.result)
    }

    /// The generation to pass to [`Self::insert`], taken before reading the row.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// Caches a row read after [`Self::generation`] returned `generation`.
    pub fn insert(&self, stored: StoredUser, generation: u64) -> Arc<Served> {
        let user = stored.result.user.clone();
        let result = Arc::new(Served::new(stored.result));
        let cached = CachedUser {
            bytes: stored.bytes as u64,
            result: Arc::clone(&result),
        };
        self.entries.insert(user.clone(), cached);
        if self.generation() != generation {
            self.entries.remove(&user);
        }
        result
    }

    /// Drops the copies of rows written since the last call. Blocking.
    fn catch_up(&self, results: &ResultStore) -> Result<(), ResultsError> {
        let changes = results.changes_since(self.seen.load(Ordering::SeqCst))?;
        let Some(&(_, last)) = changes.last() else {
            return Ok(());
        };
        self.generation.fetch_add(1, Ordering::SeqCst);
        for (user, _) in &changes {
            self.entries.remove(user.as_str());
        }
        self.seen.store(last, Ordering::SeqCst);
        Ok(())
    }
}

/// Catches the cache up with the store every `every`, until the server's state is dropped.
async fn follow(state: Weak<AppState>, every: Duration) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let Some(state) = state.upgrade() else { return };
        let caught_up = tokio::task::spawn_blocking(move || {
            let cache = state.users.as_ref().expect("followed only with a cache");
            cache.catch_up(&state.results)
        })
        .await;
        match caught_up {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!("following the results store: {e}"),
            Err(e) => tracing::warn!("following the results store: {e}"),
        }
    }
}

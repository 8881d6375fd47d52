//! [`MemoryStore`]: the embedded session store — one gate's memory, with the Redis store's rules
//! and expiries, so a quick reconnect to the same gate gets its settings back.

#[cfg(test)]
use super::Location;
use super::{Bound, DuplicateLogin, SessionStore, StoreFuture, StoredSession};
use crate::session::Session;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// Sessions kept in this process, by user id. Each entry expires `ttl` after its last write or
/// heartbeat while online, and `grace` after its disconnect; expired entries are never returned
/// and are swept as the store is used, so its memory follows the users it holds.
///
/// Cloning shares the store.
#[derive(Debug, Clone)]
pub struct MemoryStore {
    inner: Arc<Mutex<Inner>>,
    ttl: Duration,
    grace: Duration,
}

#[derive(Debug, Default)]
struct Inner {
    entries: HashMap<String, (StoredSession, Instant)>,
    /// Operations since the last sweep.
    since_sweep: usize,
}

impl Inner {
    fn get(&mut self, user_id: &str, now: Instant) -> Option<&mut (StoredSession, Instant)> {
        self.sweep(now);
        match self.entries.get(user_id) {
            Some((_, expires)) if *expires <= now => {
                self.entries.remove(user_id);
                None
            }
            _ => self.entries.get_mut(user_id),
        }
    }

    /// Every so many operations, drops what expired (bounded work per operation on average).
    fn sweep(&mut self, now: Instant) {
        self.since_sweep += 1;
        if self.since_sweep >= 64 && self.since_sweep >= self.entries.len() / 4 {
            self.since_sweep = 0;
            self.entries.retain(|_, (_, expires)| *expires > now);
            if self.entries.capacity() > 64 && self.entries.len() < self.entries.capacity() / 4 {
                self.entries.shrink_to(self.entries.len() * 2);
            }
        }
    }
}

impl MemoryStore {
    /// A store whose online entries live `ttl` past their last heartbeat and whose disconnected
    /// ones live `grace`.
    pub fn new(ttl: Duration, grace: Duration) -> Self {
        MemoryStore {
            inner: Arc::default(),
            ttl,
            grace,
        }
    }

    /// Users stored (online or in their grace period; expired entries not yet swept may count).
    pub fn len(&self) -> usize {
        self.inner.lock().expect("store lock").entries.len()
    }

    /// Whether no user is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn with<T: Send + 'static>(&self, f: impl FnOnce(&mut Inner, Instant) -> T) -> StoreFuture<T> {
        let now = Instant::now();
        let v = f(&mut self.inner.lock().expect("store lock"), now);
        Box::pin(std::future::ready(Ok(v)))
    }

    /// Writes `session`'s settings; the location becomes the session's unless the user is
    /// online on another session (which keeps it).
    fn write(&self, session: &Session) -> StoreFuture<()> {
        let Some(mut fresh) = StoredSession::of(session) else {
            return Box::pin(std::future::ready(Ok(())));
        };
        let ttl = self.ttl;
        self.with(move |inner, now| {
            if let Some((old, _)) = inner.get(&fresh.user_id, now) {
                if old.location.is_some() && !old.is_at(session) {
                    fresh.location = old.location.clone();
                }
            }
            inner
                .entries
                .insert(fresh.user_id.clone(), (fresh, now + ttl));
        })
    }
}

impl Default for MemoryStore {
    /// Entries live 3 minutes past their last heartbeat (three default heartbeat intervals) and
    /// 1 minute after a disconnect.
    fn default() -> Self {
        MemoryStore::new(Duration::from_secs(180), Duration::from_secs(60))
    }
}

impl SessionStore for MemoryStore {
    fn bind(&self, session: Arc<Session>, policy: DuplicateLogin) -> StoreFuture<Bound> {
        let Some(mut fresh) = StoredSession::of(&session) else {
            return Box::pin(std::future::ready(Ok(Bound::default())));
        };
        let ttl = self.ttl;
        self.with(move |inner, now| {
            let mut bound = Bound::default();
            if let Some((old, _)) = inner.get(&fresh.user_id, now) {
                bound.previous = old.location.clone().filter(|_| !old.is_at(&session));
                if policy == DuplicateLogin::Refuse && bound.previous.is_some() {
                    bound.refused = true;
                    return bound;
                }
                bound.restored = old.restored_for(&session);
                fresh.settings.extend(bound.restored.clone());
            }
            inner
                .entries
                .insert(fresh.user_id.clone(), (fresh, now + ttl));
            bound
        })
    }

    fn storage(&self, session: Arc<Session>) -> StoreFuture<()> {
        self.write(&session)
    }

    fn heartbeat(&self, session: Arc<Session>) -> StoreFuture<()> {
        self.write(&session)
    }

    fn disconnect(&self, session: Arc<Session>) -> StoreFuture<()> {
        let Some(user_id) = session.user_id.clone() else {
            return Box::pin(std::future::ready(Ok(())));
        };
        let grace = self.grace;
        self.with(move |inner, now| {
            if let Some((old, expires)) = inner.get(&user_id, now) {
                if old.location.is_none() || old.is_at(&session) {
                    old.location = None;
                    *expires = now + grace;
                }
            }
        })
    }

    fn delete(&self, session: Arc<Session>) -> StoreFuture<()> {
        let Some(user_id) = session.user_id.clone() else {
            return Box::pin(std::future::ready(Ok(())));
        };
        self.with(move |inner, now| {
            if let Some((old, _)) = inner.get(&user_id, now) {
                if old.location.is_none() || old.is_at(&session) {
                    inner.entries.remove(&user_id);
                }
            }
        })
    }

    fn query(&self, user_id: &str) -> StoreFuture<Option<StoredSession>> {
        let user_id = user_id.to_owned();
        self.with(move |inner, now| inner.get(&user_id, now).map(|(s, _)| s.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn session(id: &str, gate: &str, user: &str, settings: &[(&str, &str)]) -> Arc<Session> {
        let mut s = Session::new(id, "tcp", "127.0.0.1:1", gate);
        s.user_id = Some(user.into());
        s.settings = settings
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Arc::new(s)
    }

    fn map(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn bind_restores_what_the_session_lacks_and_disconnect_keeps_it_for_the_grace() {
        let store = MemoryStore::new(Duration::from_secs(30), Duration::from_secs(10));
        let first = session("s1", "g1", "alice", &[("room", "lobby"), ("level", "3")]);
        assert_eq!(
            store
                .bind(first.clone(), DuplicateLogin::Kick)
                .await
                .unwrap(),
            Bound::default()
        );
        store.disconnect(first).await.unwrap();
        let stored = store.query("alice").await.unwrap().unwrap();
        assert_eq!(stored.location, None);
        tokio::time::advance(Duration::from_secs(9)).await;
        // A reconnect (another gate, here) within the grace: its own keys win.
        let second = session("s2", "g2", "alice", &[("room", "arena")]);
        let bound = store
            .bind(second.clone(), DuplicateLogin::Kick)
            .await
            .unwrap();
        assert_eq!(bound.restored, map(&[("level", "3")]));
        assert_eq!(bound.previous, None, "offline before: no previous location");
        let stored = store.query("alice").await.unwrap().unwrap();
        assert_eq!(stored.settings, map(&[("room", "arena"), ("level", "3")]));
        assert!(stored.is_at(&second));
        store.disconnect(second).await.unwrap();
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(store.query("alice").await.unwrap(), None, "grace over");
    }

    #[tokio::test(start_paused = true)]
    async fn online_entries_expire_without_heartbeats() {
        let store = MemoryStore::new(Duration::from_secs(30), Duration::from_secs(10));
        let s = session("s1", "g1", "bob", &[]);
        store.bind(s.clone(), DuplicateLogin::Kick).await.unwrap();
        tokio::time::advance(Duration::from_secs(29)).await;
        store.heartbeat(s.clone()).await.unwrap();
        tokio::time::advance(Duration::from_secs(29)).await;
        assert!(
            store.query("bob").await.unwrap().is_some(),
            "kept by its heartbeat"
        );
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(store.query("bob").await.unwrap(), None);
        // A heartbeat after the entry was lost stores it again.
        store.heartbeat(s.clone()).await.unwrap();
        assert!(store.query("bob").await.unwrap().unwrap().is_at(&s));
    }

    #[tokio::test(start_paused = true)]
    async fn refuse_leaves_an_online_user_where_it_is_and_binds_an_offline_one() {
        let store = MemoryStore::default();
        let old = session("s1", "g1", "dave", &[("room", "a")]);
        let new = session("s2", "g2", "dave", &[]);
        store
            .bind(old.clone(), DuplicateLogin::Refuse)
            .await
            .unwrap();
        let bound = store
            .bind(new.clone(), DuplicateLogin::Refuse)
            .await
            .unwrap();
        assert!(bound.refused);
        assert!(
            bound.restored.is_empty(),
            "nothing restored to a refused session"
        );
        assert!(store.query("dave").await.unwrap().unwrap().is_at(&old));
        store.disconnect(old).await.unwrap();
        let bound = store
            .bind(new.clone(), DuplicateLogin::Refuse)
            .await
            .unwrap();
        assert!(!bound.refused);
        assert_eq!(bound.restored, map(&[("room", "a")]));
        assert!(store.query("dave").await.unwrap().unwrap().is_at(&new));
    }

    #[tokio::test(start_paused = true)]
    async fn a_newer_login_keeps_the_location_from_the_older_session() {
        let store = MemoryStore::default();
        let old = session("s1", "g1", "carol", &[]);
        let new = session("s2", "g2", "carol", &[]);
        store.bind(old.clone(), DuplicateLogin::Kick).await.unwrap();
        let bound = store.bind(new.clone(), DuplicateLogin::Kick).await.unwrap();
        assert_eq!(
            bound.previous,
            Some(Location {
                gate: "g1".into(),
                session_id: "s1".into()
            })
        );
        // The old session's late writes and its end do not take the user back.
        store.storage(old.clone()).await.unwrap();
        store.heartbeat(old.clone()).await.unwrap();
        store.disconnect(old.clone()).await.unwrap();
        store.delete(old).await.unwrap();
        assert!(store.query("carol").await.unwrap().unwrap().is_at(&new));
        // Its own logout forgets the user.
        store.delete(new).await.unwrap();
        assert_eq!(store.query("carol").await.unwrap(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn expired_entries_are_swept() {
        let store = MemoryStore::new(Duration::from_secs(1), Duration::from_secs(1));
        for i in 0..1000 {
            store
                .bind(
                    session(&format!("s{i}"), "g", &format!("u{i}"), &[]),
                    DuplicateLogin::Kick,
                )
                .await
                .unwrap();
        }
        tokio::time::advance(Duration::from_secs(2)).await;
        for _ in 0..300 {
            store.query("nobody").await.unwrap();
        }
        assert_eq!(store.len(), 0);
    }

    #[tokio::test]
    async fn unbound_sessions_are_not_stored() {
        let store = MemoryStore::default();
        let mut s = Session::new("s1", "tcp", "p", "g");
        s.settings.insert("k".into(), "v".into());
        let s = Arc::new(s);
        store.bind(s.clone(), DuplicateLogin::Kick).await.unwrap();
        store.storage(s.clone()).await.unwrap();
        store.heartbeat(s).await.unwrap();
        assert!(store.is_empty());
    }
}

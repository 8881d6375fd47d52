//! [`Groups`]: named sets of this gate's sessions (pomelo's channels, pitaya's groups). A
//! session leaves every group when it ends. A group that spans gates is the same name on each
//! gate: gatekit-server fans a group's messages out to every gate over NATS, and each gate
//! delivers to its own members.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

/// The groups of one gate.
#[derive(Debug, Default)]
pub(crate) struct Groups {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    members: HashMap<String, HashSet<String>>,
    of_session: HashMap<String, HashSet<String>>,
}

impl Groups {
    /// Adds `session_id` to `group`; false if it was a member already.
    pub(crate) fn join(&self, session_id: &str, group: &str) -> bool {
        let mut inner = self.inner.lock().expect("groups lock");
        let added = inner
            .members
            .entry(group.to_owned())
            .or_default()
            .insert(session_id.to_owned());
        inner
            .of_session
            .entry(session_id.to_owned())
            .or_default()
            .insert(group.to_owned());
        added
    }

    /// Removes `session_id` from `group`; false if it was not a member.
    pub(crate) fn leave(&self, session_id: &str, group: &str) -> bool {
        let mut inner = self.inner.lock().expect("groups lock");
        let removed = match inner.members.get_mut(group) {
            Some(m) => {
                let removed = m.remove(session_id);
                if m.is_empty() {
                    inner.members.remove(group);
                }
                removed
            }
            None => false,
        };
        if let Some(g) = inner.of_session.get_mut(session_id) {
            g.remove(group);
            if g.is_empty() {
                inner.of_session.remove(session_id);
            }
        }
        removed
    }

    /// Removes `session_id` from every group (its session ended).
    pub(crate) fn forget(&self, session_id: &str) {
        let mut inner = self.inner.lock().expect("groups lock");
        let Some(groups) = inner.of_session.remove(session_id) else {
            return;
        };
        for group in groups {
            if let Some(m) = inner.members.get_mut(&group) {
                m.remove(session_id);
                if m.is_empty() {
                    inner.members.remove(&group);
                }
            }
        }
    }

    /// The members of `group` on this gate.
    pub(crate) fn members(&self, group: &str) -> Vec<String> {
        let inner = self.inner.lock().expect("groups lock");
        inner
            .members
            .get(group)
            .map(|m| m.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// How many groups have members on this gate (memory bookkeeping, tests).
    pub(crate) fn count(&self) -> usize {
        self.inner.lock().expect("groups lock").members.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_session_that_ends_leaves_every_group() {
        let g = Groups::default();
        assert!(g.join("s1", "room"));
        assert!(!g.join("s1", "room"));
        assert!(g.join("s1", "guild"));
        assert!(g.join("s2", "room"));
        g.forget("s1");
        assert_eq!(g.members("room"), vec!["s2".to_owned()]);
        assert!(g.members("guild").is_empty());
        assert_eq!(g.count(), 1);
        assert!(g.leave("s2", "room"));
        assert!(!g.leave("s2", "room"));
        assert_eq!(g.count(), 0);
    }

    proptest! {
        /// Whatever joins, leaves and ends happen, the members are exactly the model's, and
        /// nothing is kept for a group without members.
        #[test]
        fn members_follow_a_model(ops in proptest::collection::vec((0u8..3, 0u8..4, 0u8..3), 0..60)) {
            let g = Groups::default();
            let mut model: HashSet<(u8, u8)> = HashSet::new();
            for (op, s, group) in ops {
                let (sid, gname) = (format!("s{s}"), format!("g{group}"));
                match op {
                    0 => prop_assert_eq!(g.join(&sid, &gname), model.insert((s, group))),
                    1 => prop_assert_eq!(g.leave(&sid, &gname), model.remove(&(s, group))),
                    _ => {
                        g.forget(&sid);
                        model.retain(|(ms, _)| *ms != s);
                    }
                }
            }
            for group in 0..3u8 {
                let mut got = g.members(&format!("g{group}"));
                got.sort();
                let mut want: Vec<String> = model.iter().filter(|(_, mg)| *mg == group).map(|(s, _)| format!("s{s}")).collect();
                want.sort();
                prop_assert_eq!(got, want);
            }
            let groups: HashSet<u8> = model.iter().map(|(_, g)| *g).collect();
            prop_assert_eq!(g.count(), groups.len());
        }
    }
}

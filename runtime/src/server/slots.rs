//! The connection slots of `server.max_connections`, oldest connection first. When every slot is
//! taken, the oldest connection that no authenticated call has used, and that has no call in
//! progress, is shed (cut) to make room, so
//! clients without a token can never lock out one with a token: at accept nothing is known of the
//! caller, so capacity cannot be reserved for authenticated ones, but a connection that has
//! carried an authenticated call is never shed.

use super::connection::Activity;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// The open connections, by the order they were accepted.
#[derive(Debug)]
pub struct Slots {
    max: usize,
    open: Mutex<(u64, BTreeMap<u64, Arc<Activity>>)>,
}

/// One connection's slot, freed on drop.
#[derive(Debug)]
pub struct Slot {
    slots: Arc<Slots>,
    id: u64,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.slots.lock().1.remove(&self.id);
    }
}

/// What [`Slots::admit`] did.
#[derive(Debug)]
pub enum Admission {
    /// A slot was free.
    Free(Slot),
    /// Every slot was taken: the oldest connection no authenticated call had used was shed.
    Shed(Slot),
    /// Every slot is taken by a connection an authenticated call has used.
    Full,
}

impl Slots {
    /// `max` slots (at least one).
    pub fn new(max: usize) -> Self {
        Self {
            max: max.max(1),
            open: Mutex::new((0, BTreeMap::new())),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (u64, BTreeMap<u64, Arc<Activity>>)> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A slot for the connection `activity` describes, shedding another if that is what it takes.
    pub fn admit(self: &Arc<Self>, activity: &Arc<Activity>) -> Admission {
        let mut open = self.lock();
        let (next, connections) = &mut *open;
        let shed = if connections.len() < self.max {
            false
        } else {
            // A call in progress may be a first authenticated one that has not reached the guard
            // yet; calls without a token are refused at once, so only a client's own keep a
            // connection here.
            let Some(oldest) = connections
                .iter()
                .find(|(_, a)| !a.is_proven() && !a.is_busy())
                .map(|(id, _)| *id)
            else {
                return Admission::Full;
            };
            if let Some(victim) = connections.remove(&oldest) {
                victim.shed();
            }
            true
        };
        let id = *next;
        *next += 1;
        connections.insert(id, activity.clone());
        let slot = Slot {
            slots: self.clone(),
            id,
        };
        if shed {
            Admission::Shed(slot)
        } else {
            Admission::Free(slot)
        }
    }

    /// Connections holding a slot.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.lock().1.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connection() -> Arc<Activity> {
        Arc::new(Activity::new(4, None))
    }

    #[test]
    fn at_the_cap_the_oldest_connection_without_an_authenticated_call_makes_room() {
        let slots = Arc::new(Slots::new(2));
        let (a, b, c, d) = (connection(), connection(), connection(), connection());
        let Admission::Free(_a) = slots.admit(&a) else {
            panic!("a slot was free")
        };
        let Admission::Free(_b) = slots.admit(&b) else {
            panic!("a slot was free")
        };
        let Admission::Shed(_c) = slots.admit(&c) else {
            panic!("a was shed")
        };
        assert_eq!(slots.len(), 2);
        // b is proven now: it is never shed, so c (unproven) is the one that goes.
        b.prove();
        let Admission::Shed(_d) = slots.admit(&d) else {
            panic!("c was shed")
        };
        d.prove();
        assert!(matches!(slots.admit(&connection()), Admission::Full));
        assert_eq!(slots.len(), 2);
    }

    #[test]
    fn a_closed_connection_frees_its_slot() {
        let slots = Arc::new(Slots::new(1));
        let a = connection();
        a.prove();
        let slot = slots.admit(&a);
        assert!(matches!(slots.admit(&connection()), Admission::Full));
        drop(slot);
        assert!(matches!(slots.admit(&connection()), Admission::Free(_)));
    }
}

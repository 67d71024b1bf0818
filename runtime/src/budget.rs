//! Shared budgets: a number of units (bytes held, calls open) that many holders draw from at once,
//! process-wide or per connection or subscriber, and [`Held`], which gives its units back when dropped.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Units that holders draw from, never more than `max` at once.
#[derive(Debug)]
pub struct Budget {
    used: AtomicUsize,
    max: usize,
}

impl Budget {
    /// A budget of `max` units.
    pub fn new(max: usize) -> Self {
        Self {
            used: AtomicUsize::new(0),
            max,
        }
    }

    /// Takes `n` units, or nothing when that would exceed the budget.
    pub fn try_take(&self, n: usize) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(n).filter(|total| *total <= self.max)
            })
            .is_ok()
    }

    /// Gives back `n` units taken with [`try_take`](Self::try_take).
    pub fn give_back(&self, n: usize) {
        self.used.fetch_sub(n, Ordering::AcqRel);
    }

    /// Takes `n` units for as long as the returned [`Held`] lives.
    pub fn take(self: &Arc<Self>, n: usize) -> Option<Held> {
        self.try_take(n).then(|| Held {
            budget: self.clone(),
            n,
        })
    }

    /// Like [`take`](Self::take), but `n` units are always granted while nothing is held, even
    /// over the budget: one item larger than the whole budget still passes, alone.
    pub fn take_at_least_one(self: &Arc<Self>, n: usize) -> Option<Held> {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                let total = used.checked_add(n)?;
                (used == 0 || total <= self.max).then_some(total)
            })
            .ok()
            .map(|_| Held {
                budget: self.clone(),
                n,
            })
    }

    /// Units held now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }

    /// The most units held at once.
    pub fn max(&self) -> usize {
        self.max
    }
}

/// Units taken from a [`Budget`], given back on drop.
#[derive(Debug)]
pub struct Held {
    budget: Arc<Budget>,
    n: usize,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.budget.give_back(self.n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_refuses_what_would_exceed_it_and_takes_back_returns() {
        let b = Budget::new(10);
        assert!(b.try_take(6));
        assert!(!b.try_take(5));
        assert_eq!(b.used(), 6);
        b.give_back(6);
        assert!(b.try_take(10));
    }

    #[test]
    fn held_units_come_back_on_drop() {
        let b = Arc::new(Budget::new(3));
        let two = b.take(2).expect("fits");
        assert!(b.take(2).is_none());
        drop(two);
        assert_eq!(b.used(), 0);
        assert!(b.take(3).is_some());
    }

    #[test]
    fn one_oversized_item_passes_alone_and_only_alone() {
        let b = Arc::new(Budget::new(10));
        let big = b.take_at_least_one(25).expect("nothing held: it passes");
        assert!(b.take_at_least_one(1).is_none(), "the budget is over");
        drop(big);
        let small = b.take_at_least_one(4).expect("fits");
        assert!(b.take_at_least_one(7).is_none(), "4 + 7 > 10");
        assert!(b.take_at_least_one(6).is_some());
        drop(small);
    }
}

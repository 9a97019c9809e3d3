//! HAProxy's pending connections (`queue.c`), sans-IO: a backend queue
//! for requests any server may take and one queue per server for requests
//! bound to it (a hash or cookie choice). When a server frees a slot it
//! serves the oldest request of its own queue and of the backend's (the
//! latter only when it may serve the backend: usable, and a backup only
//! while no primary is), so requests are served in arrival order across
//! both. Deadlines (`timeout queue`) are values of any ordered clock: the
//! driver passes `Instant`, the tests a virtual one.
use std::collections::{HashMap, VecDeque};
use std::hash::Hash;

/// Which queue a request waits in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place<K> {
    /// Any server of the backend may take it (`%bq`).
    Backend,
    /// Only this server (`%sq`).
    Server(K),
}

/// A queued request's handle, to leave the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ticket(u64);

#[derive(Debug)]
struct Pending<W, T> {
    ticket: Ticket,
    deadline: T,
    /// The queue's dequeue count when the request entered.
    entered: u64,
    waiter: W,
}

#[derive(Debug)]
struct Line<W, T> {
    pending: VecDeque<Pending<W, T>>,
    /// Requests dequeued so far (HAProxy's `queue.idx`).
    dequeued: u64,
}

impl<W, T> Default for Line<W, T> {
    fn default() -> Self {
        Line {
            pending: VecDeque::new(),
            dequeued: 0,
        }
    }
}

impl<W, T> Line<W, T> {
    fn push(&mut self, ticket: Ticket, deadline: T, waiter: W) {
        self.pending.push_back(Pending {
            ticket,
            deadline,
            entered: self.dequeued,
            waiter,
        });
    }
    fn front(&self) -> Option<Ticket> {
        self.pending.front().map(|p| p.ticket)
    }
    /// Takes the oldest request and its position as HAProxy logs it: the
    /// requests dequeued since it entered, itself included.
    fn pop(&mut self) -> Option<(W, u32)> {
        let pending = self.pending.pop_front()?;
        self.dequeued += 1;
        let position = u32::try_from(self.dequeued - pending.entered).unwrap_or(u32::MAX);
        Some((pending.waiter, position))
    }
    fn remove(&mut self, ticket: Ticket) -> Option<W> {
        let at = self.pending.iter().position(|p| p.ticket == ticket)?;
        self.pending.remove(at).map(|p| p.waiter)
    }
}

/// A request taken out of a queue for a server slot.
#[derive(Debug, PartialEq, Eq)]
pub struct Served<W, K> {
    pub waiter: W,
    pub from: Place<K>,
    /// `%sq` or `%bq` (the other is 0).
    pub position: u32,
}

/// One backend's queues. `W` is what wakes a request (a channel in the
/// driver), `K` names a server, `T` is the clock.
#[derive(Debug)]
pub struct Pendings<W, K, T> {
    backend: Line<W, T>,
    servers: HashMap<K, Line<W, T>>,
    next_ticket: u64,
}

impl<W, K, T> Default for Pendings<W, K, T> {
    fn default() -> Self {
        Pendings {
            backend: Line::default(),
            servers: HashMap::new(),
            next_ticket: 0,
        }
    }
}

impl<W, K: Copy + Eq + Hash, T: Copy + Ord> Pendings<W, K, T> {
    /// Queues a request until `deadline` (`timeout queue`).
    pub fn push(&mut self, place: Place<K>, deadline: T, waiter: W) -> Ticket {
        let ticket = Ticket(self.next_ticket);
        self.next_ticket += 1;
        match place {
            Place::Backend => self.backend.push(ticket, deadline, waiter),
            Place::Server(key) => self
                .servers
                .entry(key)
                .or_default()
                .push(ticket, deadline, waiter),
        }
        ticket
    }

    /// Requests waiting in `place`.
    pub fn len(&self, place: Place<K>) -> usize {
        match place {
            Place::Backend => self.backend.pending.len(),
            Place::Server(key) => self.servers.get(&key).map_or(0, |l| l.pending.len()),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.backend.pending.is_empty() && self.servers.values().all(|l| l.pending.is_empty())
    }

    /// The oldest request `server` may serve now: its own queue's head or,
    /// when `serves_backend`, the backend queue's head, whichever came
    /// first (HAProxy's `pendconn_process_next_strm`).
    pub fn next_for(&mut self, server: K, serves_backend: bool) -> Option<Served<W, K>> {
        let own = self.servers.get(&server).and_then(Line::front);
        let shared = serves_backend.then(|| self.backend.front()).flatten();
        let from = match (own, shared) {
            (None, None) => return None,
            (Some(_), None) => Place::Server(server),
            (None, Some(_)) => Place::Backend,
            (Some(own), Some(shared)) if own.0 < shared.0 => Place::Server(server),
            (Some(_), Some(_)) => Place::Backend,
        };
        let line = match from {
            Place::Backend => &mut self.backend,
            Place::Server(key) => self.servers.get_mut(&key)?,
        };
        let (waiter, position) = line.pop()?;
        Some(Served {
            waiter,
            from,
            position,
        })
    }

    /// Whether `server` has a request it may serve (see [`Self::next_for`]).
    pub fn has_work_for(&self, server: K, serves_backend: bool) -> bool {
        self.len(Place::Server(server)) > 0 || (serves_backend && self.len(Place::Backend) > 0)
    }

    /// Takes a request out (it gave up, or its client left).
    pub fn remove(&mut self, ticket: Ticket) -> Option<W> {
        if let Some(waiter) = self.backend.remove(ticket) {
            return Some(waiter);
        }
        let waiter = self.servers.values_mut().find_map(|l| l.remove(ticket));
        // An empty line holds no position anyone will read.
        self.servers.retain(|_, l| !l.pending.is_empty());
        waiter
    }

    /// Takes out every request whose deadline is at or before `now`
    /// (`timeout queue` expired: HAProxy answers 503).
    pub fn expire(&mut self, now: T) -> Vec<W> {
        let mut expired = Vec::new();
        for line in std::iter::once(&mut self.backend).chain(self.servers.values_mut()) {
            let mut kept = VecDeque::with_capacity(line.pending.len());
            for pending in line.pending.drain(..) {
                if pending.deadline <= now {
                    expired.push(pending.waiter);
                } else {
                    kept.push_back(pending);
                }
            }
            line.pending = kept;
        }
        expired
    }

    /// A server went DOWN or into MAINT (HAProxy's `pendconn_redistribute`
    /// from `srv_update_status`): with `option redispatch` its requests
    /// move to the backend queue at once, in arrival order, for any server
    /// to take; without, they stay bound to it (until it comes back or
    /// their `timeout queue`). Returns how many moved.
    pub fn server_down(&mut self, server: K, redispatch: bool) -> usize {
        if !redispatch {
            return 0;
        }
        let moved = self.len(Place::Server(server));
        self.redistribute(server);
        moved
    }

    /// Forgets the queue of a server that left the configuration, moving
    /// its requests to the backend queue in arrival order (they may go to
    /// any server now, as HAProxy's `pendconn_redistribute`).
    pub fn redistribute(&mut self, server: K) {
        let Some(line) = self.servers.remove(&server) else {
            return;
        };
        let dequeued = self.backend.dequeued;
        let mut merged: Vec<Pending<W, T>> = self.backend.pending.drain(..).collect();
        merged.extend(line.pending.into_iter().map(|mut p| {
            p.entered = dequeued;
            p
        }));
        merged.sort_by_key(|p| p.ticket.0);
        self.backend.pending = merged.into();
    }
}

#[cfg(test)]
#[path = "queue_tests.rs"]
mod tests;

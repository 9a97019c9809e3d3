use super::*;

/// A virtual clock in milliseconds.
type Ms = u64;
type Queue = Pendings<&'static str, usize, Ms>;

fn served(queue: &mut Queue, server: usize, serves_backend: bool) -> Option<(&'static str, u32)> {
    queue
        .next_for(server, serves_backend)
        .map(|s| (s.waiter, s.position))
}

#[test]
fn a_server_serves_the_oldest_of_its_queue_and_the_backends() {
    let mut q = Queue::default();
    q.push(Place::Backend, 100, "b1");
    q.push(Place::Server(0), 100, "s1");
    q.push(Place::Backend, 100, "b2");
    q.push(Place::Server(1), 100, "other");
    q.push(Place::Server(0), 100, "s2");
    let order: Vec<_> = std::iter::from_fn(|| q.next_for(0, true))
        .map(|s| (s.waiter, s.from))
        .collect();
    assert_eq!(
        order,
        [
            ("b1", Place::Backend),
            ("s1", Place::Server(0)),
            ("b2", Place::Backend),
            ("s2", Place::Server(0)),
        ]
    );
    assert_eq!(q.len(Place::Server(1)), 1, "server 1's request stays");
    assert!(!q.is_empty());
}

#[test]
fn a_server_that_may_not_serve_the_backend_takes_only_its_own() {
    let mut q = Queue::default();
    q.push(Place::Backend, 100, "b1");
    q.push(Place::Server(2), 100, "s1");
    assert!(q.has_work_for(2, false));
    assert_eq!(served(&mut q, 2, false), Some(("s1", 1)));
    assert!(!q.has_work_for(2, false));
    assert_eq!(served(&mut q, 2, false), None);
    assert!(q.has_work_for(2, true));
    assert_eq!(served(&mut q, 2, true), Some(("b1", 1)));
}

#[test]
fn positions_count_the_requests_served_since_entering_itself_included() {
    // HAProxy's %bq/%sq: queue.idx at dequeue minus queue.idx at enqueue.
    let mut q = Queue::default();
    q.push(Place::Backend, 100, "a");
    q.push(Place::Backend, 100, "b");
    q.push(Place::Backend, 100, "c");
    assert_eq!(served(&mut q, 0, true), Some(("a", 1)));
    q.push(Place::Backend, 100, "d");
    assert_eq!(served(&mut q, 1, true), Some(("b", 2)));
    assert_eq!(served(&mut q, 0, true), Some(("c", 3)));
    // d entered after a left: b, c and d left since.
    assert_eq!(served(&mut q, 0, true), Some(("d", 3)));
}

#[test]
fn deadlines_expire_on_the_virtual_clock_and_the_rest_keep_their_order() {
    let mut q = Queue::default();
    q.push(Place::Backend, 50, "early");
    q.push(Place::Backend, 200, "late");
    q.push(Place::Server(0), 50, "bound-early");
    q.push(Place::Server(0), 300, "bound-late");
    assert!(q.expire(49).is_empty());
    let mut gone = q.expire(50);
    gone.sort_unstable();
    assert_eq!(gone, ["bound-early", "early"]);
    assert_eq!(served(&mut q, 0, true), Some(("late", 1)));
    assert_eq!(q.expire(250), Vec::<&str>::new());
    assert_eq!(served(&mut q, 0, true), Some(("bound-late", 1)));
    assert!(q.is_empty());
}

#[test]
fn a_request_that_leaves_frees_its_place() {
    let mut q = Queue::default();
    let a = q.push(Place::Server(3), 100, "a");
    let b = q.push(Place::Backend, 100, "b");
    q.push(Place::Server(3), 100, "c");
    assert_eq!(q.remove(a), Some("a"));
    assert_eq!(q.remove(a), None, "only once");
    assert_eq!(q.remove(b), Some("b"));
    assert_eq!(served(&mut q, 3, true), Some(("c", 1)));
    assert!(q.is_empty());
}

#[test]
fn a_removed_servers_requests_join_the_backend_queue_in_arrival_order() {
    let mut q = Queue::default();
    q.push(Place::Server(1), 100, "s1");
    q.push(Place::Backend, 100, "b1");
    q.push(Place::Server(1), 100, "s2");
    q.redistribute(1);
    assert_eq!(q.len(Place::Server(1)), 0);
    let order: Vec<_> = std::iter::from_fn(|| served(&mut q, 0, true)).collect();
    assert_eq!(order, [("s1", 1), ("b1", 2), ("s2", 3)]);
}

/// A server that goes down hands its queue to the backend queue with
/// `option redispatch` (the oldest first, mixed with the backend's own by
/// arrival), and keeps it without.
#[test]
fn a_server_going_down_hands_its_queue_over_only_with_redispatch() {
    let mut q = Queue::default();
    q.push(Place::Server(0), 100, "s1");
    q.push(Place::Backend, 100, "b1");
    q.push(Place::Server(0), 100, "s2");
    q.push(Place::Server(1), 100, "other");
    assert_eq!(q.server_down(0, false), 0);
    assert_eq!(q.len(Place::Server(0)), 2, "bound to it without redispatch");
    assert_eq!(q.server_down(0, true), 2);
    assert_eq!((q.len(Place::Server(0)), q.len(Place::Backend)), (0, 3));
    // Server 2 (up, serving the backend queue) takes them in arrival order.
    let order: Vec<_> = std::iter::from_fn(|| served(&mut q, 2, true)).collect();
    assert_eq!(
        order.iter().map(|o| o.0).collect::<Vec<_>>(),
        ["s1", "b1", "s2"]
    );
    assert_eq!(q.len(Place::Server(1)), 1, "another server's queue stays");
    assert_eq!(q.server_down(7, true), 0, "a server with no queue");
}

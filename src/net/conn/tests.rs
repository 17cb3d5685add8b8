use super::*;

fn timeouts(send: u64, idle: u64) -> Timeouts {
    Timeouts {
        send: Duration::from_millis(send),
        idle: Duration::from_millis(idle),
    }
}

#[test]
fn an_idle_connection_breaks_the_idle_rule_and_an_answering_one_the_send_rule() {
    let a = Arc::new(Activity::new(None));
    let start = a.progress.load(Ordering::Relaxed);
    let t = timeouts(1_000, 5_000);
    assert_eq!(a.broken(t, start + 4_999), Ok(1));
    assert_eq!(a.broken(t, start + 5_000), Err(Closed::Idle));
    // A handler at work: neither rule, however long.
    let request = a.request();
    let begun = a.progress.load(Ordering::Relaxed);
    assert!(a.broken(t, begun + 60_000).is_ok());
    drop(request);
    let busy = a.answer();
    let begun = a.progress.load(Ordering::Relaxed);
    assert_eq!(a.broken(t, begun + 999), Ok(1));
    assert_eq!(a.broken(t, begun + 1_000), Err(Closed::Send));
    drop(busy);
    let ended = a.progress.load(Ordering::Relaxed);
    assert_eq!(a.broken(t, ended + 1_000), Ok(4_000));
    a.write_blocked.store(true, Ordering::Relaxed);
    assert_eq!(a.broken(t, ended + 1_000), Err(Closed::Send));
    a.wrote(10);
    assert!(!a.write_blocked.load(Ordering::Relaxed));
}

#[test]
fn the_budget_is_reserved_at_once_given_back_by_writes_and_wakes_the_bodies_waiting() {
    use std::task::Wake;
    struct Count(std::sync::atomic::AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }
    let count = Arc::new(Count(AtomicUsize::new(0)));
    let waker = Waker::from(Arc::clone(&count));
    let mut cx = Context::from_waker(&waker);
    let a = Arc::new(Activity::new(None));
    let limit = 2 * RESERVE;
    // Two reservations fit before any frame is counted; a third waits.
    assert!(a.poll_reserve(limit, &mut cx).is_ready());
    assert!(a.poll_reserve(limit, &mut cx).is_ready());
    assert!(a.poll_reserve(limit, &mut cx).is_pending());
    // One body made a small frame: the rest of its reservation comes back.
    a.settle(100);
    assert_eq!(a.ahead.load(Ordering::Relaxed), RESERVE + 100);
    assert_eq!(count.0.load(Ordering::Relaxed), 1, "what comes back wakes");
    // The other made a frame larger than its reservation: all of it counts.
    a.settle(RESERVE + 10);
    assert_eq!(a.ahead.load(Ordering::Relaxed), RESERVE + 110);
    assert!(a.poll_reserve(limit, &mut cx).is_ready());
    assert!(a.poll_reserve(limit, &mut cx).is_pending());
    a.wrote(200);
    assert_eq!(
        count.0.load(Ordering::Relaxed),
        2,
        "a write wakes the waiting body"
    );
    assert!(a.poll_reserve(limit, &mut cx).is_ready());
    a.settle(0);
    a.wrote(usize::MAX);
    assert_eq!(a.ahead.load(Ordering::Relaxed), 0, "never below nothing");
}

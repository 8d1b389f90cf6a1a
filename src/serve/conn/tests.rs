//! Tests of `conn`.

use super::*;

fn addr(last: u8) -> IpAddr {
    IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, last))
}

/// A gate started a minute ago, so that its connections can be made
/// to look idle.
fn test_gate(max: usize, per_client: usize) -> Gate {
    Gate {
        open: Mutex::default(),
        max,
        per_client,
        epoch: Instant::now() - Duration::from_secs(60),
    }
}

/// A gate whose connections were all idle long enough to be evicted,
/// but for those in `busy`.
fn age(gate: &Gate, busy: &[u64]) {
    for (id, c) in gate.lock().iter() {
        let last = if busy.contains(id) { u64::MAX / 2 } else { 0 };
        c.activity.last.store(last, Ordering::Relaxed);
    }
}

fn admit(gate: &Gate, id: u64, client: IpAddr) -> Option<oneshot::Receiver<()>> {
    gate.admit(id, client, gate.activity())
}

#[test]
fn full_gate_evicts_the_oldest_untrusted_then_the_longest_idle() {
    let gate = test_gate(3, 3);
    let a = addr(1);
    let mut first = admit(&gate, 1, a).unwrap();
    let mut second = admit(&gate, 2, a).unwrap();
    let mut third = admit(&gate, 3, a).unwrap();
    gate.trust(1);
    // Full: 2 is the oldest untrusted, however fresh.
    let _fourth = admit(&gate, 4, addr(2)).unwrap();
    assert!(second.try_recv().is_ok(), "evicted");
    assert!(first.try_recv().is_err() && third.try_recv().is_err());
    assert_eq!(gate.len(), 3);
    gate.trust(3);
    gate.trust(4);
    assert!(
        admit(&gate, 5, addr(3)).is_none(),
        "all trusted and busy: refused"
    );
    // All trusted: the idle ones make room, the longest idle first; 4 is busy.
    age(&gate, &[4]);
    gate.lock()
        .get(&3)
        .unwrap()
        .activity
        .last
        .store(10, Ordering::Relaxed);
    assert!(admit(&gate, 5, addr(3)).is_some());
    assert!(first.try_recv().is_ok(), "1 was idle longer than 3");
    assert!(third.try_recv().is_err());
    age(&gate, &[3, 4, 5]);
    gate.trust(5);
    assert!(admit(&gate, 6, addr(3)).is_none(), "all busy: refused");
    gate.leave(4);
    assert!(admit(&gate, 6, addr(3)).is_some());
}

#[test]
fn one_address_makes_room_among_its_own() {
    let gate = test_gate(10, 2);
    let (a, b) = (addr(1), addr(2));
    let mut a1 = admit(&gate, 1, a).unwrap();
    let _a2 = admit(&gate, 2, a).unwrap();
    let mut b1 = admit(&gate, 3, b).unwrap();
    gate.trust(1);
    gate.trust(2);
    assert!(
        admit(&gate, 4, a).is_none(),
        "a's are admitted and busy: refused"
    );
    age(&gate, &[2]);
    assert!(admit(&gate, 4, a).is_some(), "a's idle 1 made room");
    assert!(a1.try_recv().is_ok());
    assert!(b1.try_recv().is_err(), "other addresses untouched");
    assert_eq!(gate.len(), 3);
}

#[test]
fn cap_is_bounded_by_the_file_limit() {
    let cap = max_connections();
    assert!((8..=MAX_CONNECTIONS).contains(&cap));
}

#[tokio::test]
async fn a_write_that_makes_no_progress_fails_after_idle() {
    let (client, server) = tokio::io::duplex(1024);
    let gate = Gate::new(1, 1);
    let activity = gate.activity();
    let mut w = Watched::new(server, activity, Duration::from_millis(200));
    use tokio::io::AsyncWriteExt as _;
    let started = Instant::now();
    // The client never reads: the pipe fills, then the write stalls.
    let err = w.write_all(&[0u8; 64 * 1024]).await.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
    assert!(started.elapsed() >= Duration::from_millis(200));
    drop(client);
}

//! Tests of `body`.

use super::*;

fn no_turn() -> Turn {
    Turn {
        rebuilds: None,
        permit: None,
    }
}

#[test]
fn held_back_until_released() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let (tx, mut rx) = mpsc::channel(64);
    let mut w = HeldBack::new(tx, rt.handle().clone(), no_turn(), Duration::from_secs(120));
    let data = vec![7u8; CHUNK * 3 + 100];
    let writer = std::thread::spawn(move || {
        w.write_all(&data).unwrap();
        (w, data)
    });
    let (w, data) = writer.join().unwrap();
    // Two full chunks went out; the third and the tail are held.
    let mut got = Vec::new();
    while let Ok(Ok(b)) = rx.try_recv() {
        got.extend_from_slice(&b);
    }
    assert_eq!(got.len(), 2 * CHUNK);
    let released = std::thread::spawn(move || w.release());
    rt.block_on(async {
        while let Some(Ok(b)) = rx.recv().await {
            got.extend_from_slice(&b);
        }
    });
    released.join().unwrap().unwrap();
    assert_eq!(got, data);
}

#[test]
fn a_response_whose_client_does_not_read_gives_its_turn_up() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_time()
        .build()
        .unwrap();
    let rebuilds = Arc::new(Semaphore::new(1));
    let permit = rebuilds.clone().try_acquire_owned().unwrap();
    let turn = Turn {
        rebuilds: Some(rebuilds.clone()),
        permit: Some(permit),
    };
    let (tx, mut rx) = mpsc::channel(1);
    let mut w = HeldBack::new(tx, rt.handle().clone(), turn, Duration::from_secs(60));
    let writer = std::thread::spawn(move || {
        w.write_all(&vec![1u8; CHUNK * 4]).unwrap();
        w
    });
    // The channel is full and nobody reads: the slot is free for others.
    let deadline = Instant::now() + Duration::from_secs(10);
    while rebuilds.available_permits() == 0 {
        assert!(Instant::now() < deadline, "the turn was not given up");
        std::thread::sleep(Duration::from_millis(10));
    }
    // The client reads again: the response takes its turn back and goes on.
    let mut got = 0;
    while got < 2 * CHUNK {
        got += rt.block_on(rx.recv()).unwrap().unwrap().len();
    }
    let w = writer.join().unwrap();
    assert_eq!(rebuilds.available_permits(), 0, "taken back");
    drop(w);
    assert_eq!(rebuilds.available_permits(), 1);
}

#[test]
fn a_response_whose_client_reads_nothing_ends_after_the_stall_time() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_time()
        .build()
        .unwrap();
    let (tx, _rx) = mpsc::channel(1);
    let mut w = HeldBack::new(
        tx,
        rt.handle().clone(),
        no_turn(),
        Duration::from_millis(300),
    );
    let err = std::thread::spawn(move || w.write_all(&vec![0u8; CHUNK * 4]))
        .join()
        .unwrap()
        .unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::TimedOut);
}

#[test]
fn later_responses_get_fewer_threads() {
    let w = Workers::new(4);
    let first = w.share();
    let second = w.share();
    let third = w.share();
    assert_eq!((first.threads, second.threads, third.threads), (4, 2, 2));
    drop((first, second, third));
    assert_eq!(w.share().threads, 4, "all ended: a new one gets them all");
    assert_eq!(Workers::new(0).share().threads, 1);
    let each = Workers::each(4);
    let held = (each.share(), each.share());
    assert_eq!((held.0.threads, held.1.threads), (4, 4), "the hand-off's");
}

#[test]
fn a_client_that_went_away_stops_the_rebuild() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let (tx, rx) = mpsc::channel(1);
    drop(rx);
    let mut w = HeldBack::new(tx, rt.handle().clone(), no_turn(), Duration::from_secs(120));
    let err = std::thread::spawn(move || w.write_all(&vec![0u8; CHUNK * 3]))
        .join()
        .unwrap()
        .unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
}

//! One stream of bytes fed to many consumers at once, each on a thread of
//! its own, with bounded memory: how the original-bytes search rebuilds a
//! layer's tar once for every candidate encoder still alive.
//!
//! The producer's bytes are cut into [`CHUNK`]-sized shared chunks; each
//! consumer reads them from a channel [`DEPTH`] chunks deep. Every consumer
//! gets the same chunks (shared, not copied) and the producer waits for the
//! slowest, so at most `DEPTH + consumers` chunks are alive whatever the
//! stream's size (8 MiB and a chunk per consumer), and the faster
//! consumers may run that far ahead: the cores stay busy while the slowest
//! encoders catch up. A
//! consumer that has seen enough (its encoder's output passed the recorded
//! size) returns early and drops its channel; it is not fed again. When no
//! consumer is left the producer's writes fail with [`NoneLeft`], so a
//! search that has ruled every candidate out stops rebuilding.
//!
//! Consumers take **turns**: one compresses only while it holds one of as
//! many permits as the machine has cores (shared by every search in the
//! process), for up to [`TURN`] chunks, and gives it back before it waits
//! for more. Without turns a dozen encoders time-slice on two cores and
//! evict each other's tables from the caches (measured: 9 % more CPU for
//! 15 encoders run at once than one after another).

use std::io::{self, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TryRecvError};
use std::sync::{Arc, Condvar, Mutex, OnceLock};

use anyhow::Result;

/// Bytes per shared chunk.
pub(crate) const CHUNK: usize = 256 * 1024;
/// Chunks in flight per consumer.
pub(crate) const DEPTH: usize = 32;

/// Chunks a consumer compresses in one turn at most (4 MiB).
pub(crate) const TURN: usize = 16;

/// The chunks a consumer reads, in order, in turns.
pub(crate) struct Chunks {
    rx: Receiver<Arc<[u8]>>,
    turns: &'static Turns,
}

impl Chunks {
    /// Every chunk until the stream ends; the consumer holds a core's
    /// permit while it works on them, never while it waits.
    pub(crate) fn iter(&self) -> impl Iterator<Item = Arc<[u8]>> + '_ {
        let mut held: Option<Permit> = None;
        let mut taken = 0;
        std::iter::from_fn(move || {
            if held.is_some() && taken < TURN {
                match self.rx.try_recv() {
                    Ok(chunk) => {
                        taken += 1;
                        return Some(chunk);
                    }
                    Err(TryRecvError::Disconnected) => return None,
                    Err(TryRecvError::Empty) => {}
                }
            }
            // Give the core back before waiting (or after a whole turn).
            held = None;
            let chunk = self.rx.recv().ok()?;
            held = Some(self.turns.take());
            taken = 1;
            Some(chunk)
        })
    }
}

/// As many permits as cores, for every search of the process.
pub(crate) struct Turns {
    free: Mutex<usize>,
    freed: Condvar,
}

/// A core's permit, given back when dropped.
struct Permit(&'static Turns);

impl Turns {
    fn global() -> &'static Turns {
        static TURNS: OnceLock<Turns> = OnceLock::new();
        TURNS.get_or_init(|| Turns {
            free: Mutex::new(crate::cores()),
            freed: Condvar::new(),
        })
    }

    fn take(&'static self) -> Permit {
        let mut free = crate::lock(&self.free);
        while *free == 0 {
            free = self.freed.wait(free).unwrap_or_else(|p| p.into_inner());
        }
        *free -= 1;
        Permit(self)
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        *crate::lock(&self.0.free) += 1;
        self.0.freed.notify_one();
    }
}

/// A consumer: reads chunks until it is done or the channel ends (the
/// stream is complete), and says what it found.
pub(crate) type Consumer<'a, T> = Box<dyn FnOnce(&Chunks) -> T + Send + 'a>;

/// Every consumer has returned: nothing wants the rest of the stream.
#[derive(Debug, thiserror::Error)]
#[error("no consumer is left for the rest of the stream")]
pub(crate) struct NoneLeft;

/// Whether `e` is the producer stopped by [`NoneLeft`].
pub(crate) fn is_none_left(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<io::Error>()
            .and_then(|e| e.get_ref())
            .is_some_and(|inner| inner.is::<NoneLeft>())
            || c.is::<NoneLeft>()
    })
}

/// Run `produce` once, its bytes going to every consumer, each on its own
/// thread; `alive` counts the consumers still reading (for progress).
/// Returns what each consumer found, in their order. `produce` failing
/// with [`NoneLeft`] is no error: every consumer returned early.
pub(crate) fn one_pass<'a, T: Send>(
    produce: impl FnOnce(&mut dyn Write) -> Result<()>,
    consumers: Vec<Consumer<'a, T>>,
    alive: &AtomicUsize,
) -> Result<Vec<T>> {
    std::thread::scope(|scope| {
        let mut senders = Vec::new();
        let mut threads = Vec::new();
        alive.store(consumers.len(), Ordering::SeqCst);
        for consume in consumers {
            let (tx, rx) = sync_channel::<Arc<[u8]>>(DEPTH);
            senders.push(tx);
            let chunks = Chunks {
                rx,
                turns: Turns::global(),
            };
            threads.push(scope.spawn(move || {
                let found = consume(&chunks);
                alive.fetch_sub(1, Ordering::SeqCst);
                found
            }));
        }
        let mut fan = Fan {
            senders,
            pending: Vec::with_capacity(CHUNK),
        };
        let produced = produce(&mut fan).and_then(|()| Ok(fan.flush_pending()?));
        // Closing the channels tells the consumers the stream is complete.
        drop(fan);
        let found: Vec<T> = threads
            .into_iter()
            .map(|t| {
                t.join()
                    .map_err(|_| anyhow::anyhow!("a search thread panicked"))
            })
            .collect::<Result<_>>()?;
        match produced {
            Err(e) if !is_none_left(&e) => Err(e),
            _ => Ok(found),
        }
    })
}

/// The producer's side: chunks out to every consumer still reading.
struct Fan {
    senders: Vec<SyncSender<Arc<[u8]>>>,
    pending: Vec<u8>,
}

impl Fan {
    /// Send the pending bytes to every consumer still reading.
    fn flush_pending(&mut self) -> io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let chunk: Arc<[u8]> = std::mem::take(&mut self.pending).into();
        self.pending.reserve(CHUNK);
        // A consumer that returned dropped its end: it is fed no more.
        self.senders.retain(|tx| tx.send(chunk.clone()).is_ok());
        match self.senders.is_empty() {
            true => Err(io::Error::other(NoneLeft)),
            false => Ok(()),
        }
    }
}

impl Write for Fan {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.senders.is_empty() {
            return Err(io::Error::other(NoneLeft));
        }
        let n = buf.len().min(CHUNK - self.pending.len());
        self.pending.extend_from_slice(&buf[..n]);
        if self.pending.len() == CHUNK {
            self.flush_pending()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 7 % 251) as u8).collect()
    }

    /// A consumer that reads everything and returns it.
    fn collect<'a>() -> Consumer<'a, Vec<u8>> {
        Box::new(|rx: &Chunks| rx.iter().flat_map(|c| c.to_vec()).collect())
    }

    #[test]
    fn every_consumer_gets_every_byte_in_order() {
        for n in [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 5 * CHUNK + 17] {
            let input = data(n);
            let alive = AtomicUsize::new(0);
            let produce = |w: &mut dyn Write| {
                for piece in input.chunks(100_003) {
                    w.write_all(piece)?;
                }
                Ok(())
            };
            let got = one_pass(produce, vec![collect(), collect(), collect()], &alive).unwrap();
            assert!(got.iter().all(|g| g == &input), "{n}");
            assert_eq!(alive.load(Ordering::SeqCst), 0);
        }
    }

    #[test]
    fn consumers_that_return_early_are_fed_no_more_and_the_last_stops_the_producer() {
        let input = data((2 * DEPTH + 40) * CHUNK);
        let produced = AtomicUsize::new(0);
        let produce = |w: &mut dyn Write| {
            for piece in input.chunks(CHUNK / 2) {
                w.write_all(piece)?;
                produced.fetch_add(piece.len(), Ordering::SeqCst);
            }
            Ok(())
        };
        let take = |chunks: usize| -> Consumer<'_, usize> {
            Box::new(move |rx: &Chunks| rx.iter().take(chunks).map(|c| c.len()).sum())
        };
        let alive = AtomicUsize::new(0);
        let got = one_pass(produce, vec![take(2), take(5)], &alive).unwrap();
        assert_eq!(got, [2 * CHUNK, 5 * CHUNK]);
        // Stopped soon after the last consumer left, not at the end.
        let stopped_at = produced.load(Ordering::SeqCst);
        assert!(stopped_at <= (6 + DEPTH) * CHUNK, "{stopped_at}");
    }

    #[test]
    fn a_producer_error_is_returned() {
        let produce = |w: &mut dyn Write| {
            w.write_all(&[1, 2, 3])?;
            anyhow::bail!("damaged layer")
        };
        let alive = AtomicUsize::new(0);
        let e = one_pass(produce, vec![collect()], &alive).unwrap_err();
        assert!(e.to_string().contains("damaged layer"));
    }
}

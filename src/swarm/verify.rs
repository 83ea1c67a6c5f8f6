//! Worker threads that run jobs and hand the results back in the order the jobs were given:
//! piece hashing off the engine thread (see `Pieces`). Job k goes to thread k mod n and its
//! result is taken from there, so order needs no sorting. The caller decides when to take
//! results, so where they take effect in the packet stream is decided by the caller alone,
//! never by thread timing: replays stay deterministic.

use std::collections::VecDeque;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::thread::JoinHandle;

pub(crate) struct Worker<J, O> {
    /// Per thread: its job queue and its results. Empty once a thread is found gone.
    lanes: Vec<(Sender<J>, Receiver<O>)>,
    /// Lane of the next job given, and of the oldest job in flight.
    next_in: usize,
    next_out: usize,
    /// The weight (bytes held) of each job in flight, oldest first.
    in_flight: VecDeque<usize>,
    weight: usize,
    threads: Vec<JoinHandle<()>>,
}

impl<J: Send + 'static, O: Send + 'static> Worker<J, O> {
    /// `n` threads (at least one). None when none can be started (the caller then does the
    /// work itself).
    pub(crate) fn start(
        name: &str,
        n: usize,
        work: impl Fn(J) -> O + Send + Clone + 'static,
    ) -> Option<Self> {
        let mut lanes = Vec::new();
        let mut threads = Vec::new();
        for _ in 0..n.max(1) {
            let (jobs, rx) = channel::<J>();
            let (tx, results) = channel::<O>();
            let work = work.clone();
            let spawned = std::thread::Builder::new()
                .name(name.into())
                .spawn(move || {
                    for job in rx {
                        if tx.send(work(job)).is_err() {
                            break;
                        }
                    }
                });
            match spawned {
                Ok(t) => {
                    lanes.push((jobs, results));
                    threads.push(t);
                }
                Err(_) => break,
            }
        }
        if lanes.is_empty() {
            return None;
        }
        Some(Worker {
            lanes,
            next_in: 0,
            next_out: 0,
            in_flight: VecDeque::new(),
            weight: 0,
            threads,
        })
    }

    /// Queue a job; `weight` is what it holds. Err gives the job back when the threads
    /// are gone.
    pub(crate) fn submit(&mut self, weight: usize, job: J) -> Result<(), J> {
        let Some((tx, _)) = self.lanes.get(self.next_in) else {
            return Err(job);
        };
        tx.send(job).map_err(|e| e.0)?;
        self.next_in = (self.next_in + 1) % self.lanes.len();
        self.in_flight.push_back(weight);
        self.weight += weight;
        Ok(())
    }

    /// The result of the oldest job in flight, waiting for it. None when nothing is in
    /// flight or a thread died (whatever was in flight is then lost, and forgotten; no
    /// more jobs are taken).
    pub(crate) fn next(&mut self) -> Option<O> {
        if self.in_flight.is_empty() {
            return None;
        }
        let got = self
            .lanes
            .get(self.next_out)
            .and_then(|(_, rx)| rx.recv().ok());
        match got {
            Some(o) => Some(self.taken(o)),
            None => self.lost(),
        }
    }

    /// The oldest job's result if it is ready, without waiting (live capture: verdicts take
    /// effect as soon as they exist; a replay never calls this).
    pub(crate) fn try_next(&mut self) -> Option<O> {
        if self.in_flight.is_empty() {
            return None;
        }
        match self.lanes.get(self.next_out)?.1.try_recv() {
            Ok(o) => Some(self.taken(o)),
            Err(std::sync::mpsc::TryRecvError::Empty) => None,
            Err(std::sync::mpsc::TryRecvError::Disconnected) => self.lost(),
        }
    }

    /// The oldest job's result is out: forget the job, the next result is the next lane's.
    fn taken(&mut self, o: O) -> O {
        if let Some(w) = self.in_flight.pop_front() {
            self.weight -= w;
        }
        self.next_out = (self.next_out + 1) % self.lanes.len();
        o
    }

    /// A thread died: what was in flight is lost, and no more jobs are taken.
    fn lost(&mut self) -> Option<O> {
        self.in_flight.clear();
        self.weight = 0;
        self.lanes.clear();
        None
    }

    pub(crate) fn len(&self) -> usize {
        self.in_flight.len()
    }

    /// Weight of the jobs in flight.
    pub(crate) fn weight(&self) -> usize {
        self.weight
    }

    pub(crate) fn alive(&self) -> bool {
        !self.lanes.is_empty()
    }
}

impl<J, O> Drop for Worker<J, O> {
    fn drop(&mut self) {
        self.lanes.clear(); // closes the queues: each thread finishes what it has and ends
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Worker;
    use std::time::Duration;

    #[test]
    fn results_come_back_in_submission_order() {
        // Later jobs finish first on their threads; order must not follow.
        let mut w = Worker::start("t", 3, |n: u64| {
            std::thread::sleep(Duration::from_millis(10 - n % 10));
            n * 2
        })
        .unwrap();
        for n in 0..20u64 {
            w.submit(n as usize, n).unwrap();
        }
        assert_eq!(w.weight(), (0..20).sum::<usize>());
        let got: Vec<u64> = std::iter::from_fn(|| w.next()).collect();
        assert_eq!(got, (0..20).map(|n| n * 2).collect::<Vec<_>>());
        assert_eq!((w.len(), w.weight()), (0, 0));
    }

    #[test]
    fn a_dead_thread_loses_its_jobs_and_takes_no_more() {
        let mut w = Worker::start("t", 1, |n: u32| {
            assert!(n != 3, "job 3 kills the thread");
            n
        })
        .unwrap();
        for n in 0..5 {
            w.submit(1, n).unwrap();
        }
        let got: Vec<u32> = std::iter::from_fn(|| w.next()).collect();
        assert_eq!(got, vec![0, 1, 2]);
        assert!(!w.alive());
        assert_eq!((w.len(), w.weight()), (0, 0));
        assert_eq!(
            w.submit(1, 9),
            Err(9),
            "the job comes back to be done inline"
        );
    }
}

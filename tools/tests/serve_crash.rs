//! SIGKILL during writes with `--durability sync` loses no acknowledged write: writer
//! threads record every SET (plain and pipelined) and INCR the server acknowledged, the
//! server is killed at a random moment, and after a restart every one of them is there.

mod serve_support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::Signal;
use serve_support::{Server, random_u64, tempdir};

/// What the writers saw acknowledged.
#[derive(Default)]
struct Acked {
    sets: Vec<(String, String)>,
    /// Highest value an INCR of each counter returned.
    counters: HashMap<String, i64>,
}

fn writer(url: String, w: usize, acked: Arc<Mutex<Acked>>) {
    let mut c = serve_support::connect(&url);
    for i in 0u64.. {
        let key = format!("w{w}-{i}");
        let value = format!("{i}-{}", "x".repeat((i % 200) as usize));
        let result = if i % 3 == 0 {
            // A pipelined batch: its keys run concurrently on the server.
            let mut pipe = redis::pipe();
            let batch: Vec<(String, String)> = (0..8)
                .map(|j| (format!("{key}-p{j}"), format!("{value}-{j}")))
                .collect();
            for (k, v) in &batch {
                pipe.cmd("SET").arg(k).arg(v).ignore();
            }
            pipe.query::<()>(&mut c).map(|()| {
                acked.lock().unwrap().sets.extend(batch);
            })
        } else if i % 3 == 1 {
            let counter = format!("counter-{}", i % 4);
            redis::cmd("INCR")
                .arg(&counter)
                .query::<i64>(&mut c)
                .map(|n| {
                    let mut acked = acked.lock().unwrap();
                    let seen = acked.counters.entry(counter).or_default();
                    *seen = (*seen).max(n);
                })
        } else {
            redis::cmd("SET")
                .arg(&key)
                .arg(&value)
                .query::<()>(&mut c)
                .map(|()| {
                    acked.lock().unwrap().sets.push((key, value));
                })
        };
        if result.is_err() {
            return;
        }
    }
}

#[test]
fn sigkill_during_sync_writes_loses_no_acknowledged_write() {
    let dir = tempdir();
    let server = Server::start(dir.path(), &["--durability", "sync"]);
    let acked = Arc::new(Mutex::new(Acked::default()));
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let (url, acked) = (server.url(), acked.clone());
            std::thread::spawn(move || writer(url, w, acked))
        })
        .collect();
    let delay = Duration::from_millis(300 + random_u64() % 700);
    std::thread::sleep(delay);
    let status = server.signal(Signal::SIGKILL);
    assert_eq!(status.code(), None, "killed by a signal");
    for w in writers {
        w.join().unwrap();
    }
    let acked = std::mem::take(&mut *acked.lock().unwrap());
    assert!(
        acked.sets.len() > 50,
        "only {} acknowledged sets in {delay:?}",
        acked.sets.len()
    );

    let server = Server::start(dir.path(), &["--cores", "3"]);
    let mut c = server.client();
    for chunk in acked.sets.chunks(500) {
        let keys: Vec<&String> = chunk.iter().map(|(k, _)| k).collect();
        let values: Vec<Option<String>> = redis::cmd("MGET").arg(&keys).query(&mut c).unwrap();
        for ((key, want), got) in chunk.iter().zip(values) {
            assert_eq!(
                got.as_ref(),
                Some(want),
                "acknowledged {key} lost or wrong after SIGKILL"
            );
        }
    }
    for (counter, seen) in &acked.counters {
        let n: i64 = redis::cmd("GET").arg(counter).query(&mut c).unwrap();
        assert!(
            n >= *seen,
            "{counter} is {n} after SIGKILL; {seen} was acknowledged"
        );
    }
    eprintln!(
        "killed after {delay:?}: {} sets and {} counters checked",
        acked.sets.len(),
        acked.counters.len()
    );
}

//! MULTI, EXEC, DISCARD, WATCH, UNWATCH, MSETNX, RENAME and RENAMENX: the replies and
//! errors against a real Redis 7 (the same script to `redis-server` and to `ringkv
//! serve`), WATCH against a second client's write on both, and under concurrent
//! clients: no lost update (WATCH retry loops, MULTI INCR), and an EXEC that reads two
//! keys on different cores never sees one changed without the other.
//! RINGKV_SKIP_EXTERNAL=1 skips the comparisons, as for the other external tests.

mod serve_support;

use serve_support::{Redis, Server, compare_with_redis, connect_plain, external, reply, tempdir};

const SCRIPT: &[&str] = &[
    "EXEC",
    "DISCARD",
    "UNWATCH",
    "MULTI",
    "MULTI",
    "SET a 1",
    "INCR a",
    "GET a",
    "MSET b 2 c 3",
    "MGET a b c",
    "WATCH a",
    "EXEC",
    "MULTI",
    "SET s text",
    "INCR s",
    "APPEND s !",
    "EXEC",
    "MULTI",
    "SET gone 1",
    "DISCARD",
    "EXISTS gone",
    "MULTI",
    "SET x 1",
    "NOSUCHCOMMAND",
    "GET",
    "EXEC",
    "EXISTS x",
    "MULTI",
    "PING",
    "ECHO hi",
    "SET t v EX 100",
    "TTL t",
    "EXPIRE t 200",
    "TTL t",
    "PERSIST t",
    "TTL t",
    "GETDEL t",
    "EXISTS t",
    "UNWATCH",
    "EXEC",
    "MULTI",
    "EXEC",
    "MSETNX m1 1 m2 2",
    "MSETNX m2 x m3 3",
    "MGET m1 m2 m3",
    "MSETNX m1",
    "SET r1 v1 EX 500",
    "RENAME r1 r2",
    "EXISTS r1",
    "GET r2",
    "TTL r2",
    "RENAME r1 r2",
    "RENAME r2 r2",
    "SET r3 other EX 900",
    "RENAME r2 r3",
    "GET r3",
    "TTL r3",
    "SET r4 x",
    "RENAMENX r3 r4",
    "RENAMENX r3 r5",
    "RENAMENX r5 r5",
    "RENAMENX nothing r6",
    "GET r5",
    "MULTI",
    "RENAME r5 r7",
    "MSETNX r7 no r8 no",
    "GET r7",
    "EXEC",
    "WATCH w",
    "MULTI",
    "WATCH w",
    "SET w 1",
    "EXEC",
];

#[test]
fn transactions_and_atomic_commands_answer_as_redis_7_does() {
    compare_with_redis(SCRIPT.iter().map(|line| line.to_string()));
}

/// WATCH k; another client writes k; MULTI … EXEC answers a null array and writes
/// nothing. Without the other write it commits. On both servers.
#[test]
fn a_watched_key_written_by_another_client_aborts_exec() {
    let Some(program) = external("redis-server") else {
        return;
    };
    let redis = Redis::start(&program);
    let dir = tempdir();
    let server = Server::start(dir.path(), &[]);
    for url in [redis.1.clone(), server.url()] {
        let (mut a, mut b) = (connect_plain(&url), connect_plain(&url));
        let script = |c: &mut redis::Connection, lines: &[&str]| -> Vec<String> {
            lines.iter().map(|l| reply(c, l)).collect()
        };
        script(&mut a, &["SET k 1", "WATCH k", "GET k"]);
        script(&mut b, &["SET k 2"]);
        let got = script(
            &mut a,
            &[
                "MULTI",
                "SET k 3",
                "SET other 1",
                "EXEC",
                "GET k",
                "EXISTS other",
            ],
        );
        assert_eq!(got[3], "nil", "{url}: {got:?}");
        assert_eq!(got[4], "bulk-string('\"2\"')", "{url}: {got:?}");
        assert_eq!(got[5], "int(0)", "{url}: {got:?}");
        let got = script(&mut a, &["WATCH k", "MULTI", "SET k 4", "EXEC", "GET k"]);
        assert_eq!(got[4], "bulk-string('\"4\"')", "{url}: {got:?}");
    }
}

fn number(con: &mut redis::Connection, key: &str) -> i64 {
    let v: Option<i64> = redis::cmd("GET").arg(key).query(con).unwrap();
    v.unwrap_or(0)
}

/// Clients increment through WATCH/GET/MULTI/SET/EXEC retry loops (redis-py's
/// optimistic locking) and through MULTI INCR a INCR b EXEC; readers run MULTI GET a
/// GET b EXEC. No increment is lost and no EXEC sees `a` and `b` apart.
#[test]
fn concurrent_clients_lose_no_update_and_exec_is_isolated() {
    let dir = tempdir();
    let server = Server::start(dir.path(), &["--cores", "2"]);
    const CLIENTS: usize = 3;
    const ROUNDS: i64 = 40;
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        let mut writers = Vec::new();
        for _ in 0..CLIENTS {
            let url = server.url();
            writers.push(s.spawn(move || {
                let mut c = connect_plain(&url);
                let mut aborted = 0;
                for _ in 0..ROUNDS {
                    loop {
                        let () = redis::cmd("WATCH").arg("counter").query(&mut c).unwrap();
                        let n = number(&mut c, "counter");
                        let done: Option<Vec<redis::Value>> = redis::pipe()
                            .atomic()
                            .cmd("SET")
                            .arg("counter")
                            .arg(n + 1)
                            .query(&mut c)
                            .unwrap();
                        match done {
                            Some(_) => break,
                            None => aborted += 1,
                        }
                    }
                    let _: (i64, i64) = redis::pipe()
                        .atomic()
                        .cmd("INCR")
                        .arg("a")
                        .cmd("INCR")
                        .arg("b")
                        .query(&mut c)
                        .unwrap();
                }
                aborted
            }));
        }
        let url = server.url();
        let stop = &stop;
        let reader = s.spawn(move || {
            let mut c = connect_plain(&url);
            let mut reads = 0;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let (a, b): (Option<i64>, Option<i64>) = redis::pipe()
                    .atomic()
                    .cmd("GET")
                    .arg("a")
                    .cmd("GET")
                    .arg("b")
                    .query(&mut c)
                    .unwrap();
                assert_eq!(
                    a, b,
                    "an EXEC saw one INCR of a transaction without the other"
                );
                reads += 1;
            }
            reads
        });
        let aborted: usize = writers.into_iter().map(|w| w.join().unwrap()).sum();
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let reads = reader.join().unwrap();
        eprintln!("{aborted} EXECs aborted by WATCH and retried; {reads} isolated reads");
    });
    let mut c = connect_plain(&server.url());
    let total = CLIENTS as i64 * ROUNDS;
    assert_eq!(
        number(&mut c, "counter"),
        total,
        "a WATCHed increment was lost"
    );
    assert_eq!(number(&mut c, "a"), total);
    assert_eq!(number(&mut c, "b"), total);
}

//! GETRANGE, SETRANGE, TYPE, KEYS, RANDOMKEY and TIME against a real Redis 7: the same
//! script goes to `redis-server` and to `ringkv serve`, and every reply must be the
//! same (KEYS compared as sets: neither server promises an order). RANDOMKEY and TIME
//! answer differently by nature; they are checked for what they promise.
//! RINGKV_SKIP_EXTERNAL=1 skips the comparison, as for the other external tests.

mod serve_support;

use std::time::{SystemTime, UNIX_EPOCH};

use serve_support::{Server, compare_with_redis, tempdir};

const SCRIPT: &[&str] = &[
    "GETRANGE missing 0 -1",
    "TYPE missing",
    "SET s hello",
    "TYPE s",
    "GETRANGE s 0 -1",
    "GETRANGE s 1 3",
    "GETRANGE s -3 -1",
    "GETRANGE s 0 -10",
    "GETRANGE s -1 -5",
    "GETRANGE s 3 1",
    "GETRANGE s 10 20",
    "GETRANGE s -100 100",
    "GETRANGE s -9223372036854775808 9223372036854775807",
    "GETRANGE s x 1",
    "GETRANGE s 0 1.5",
    "GETRANGE s 0",
    "SETRANGE s 1 EL",
    "GET s",
    "SETRANGE s 7 xy",
    "GET s",
    "STRLEN s",
    "SETRANGE s 2 \"\"",
    "SETRANGE new 0 \"\"",
    "EXISTS new",
    "SETRANGE new 3 abc",
    "GET new",
    "SETRANGE new -1 x",
    "SETRANGE new x x",
    "SETRANGE new 536870912 x",
    "SETRANGE missing 536870912 x",
    "EXISTS missing",
    "SET t v EX 1000",
    "SETRANGE t 1 w",
    "TTL t",
    "GET t",
    "SET n 12345",
    "GETRANGE n 1 2",
    "SETRANGE n 0 9",
    "INCR n",
    "TYPE n",
    "KEYS",
    "RANDOMKEY x",
    "TIME x",
];

#[test]
fn string_range_and_keyspace_commands_answer_as_redis_7_does() {
    let Some(mut both) = compare_with_redis(SCRIPT.iter().map(|line| line.to_string())) else {
        return;
    };
    for pattern in ["*", "s", "n*", "?", "[st]", "*e*", "nomatch*", "h[^a]llo"] {
        let keys = |con: &mut redis::Connection| -> Vec<Vec<u8>> {
            let mut keys: Vec<Vec<u8>> = redis::cmd("KEYS").arg(pattern).query(con).unwrap();
            keys.sort();
            keys
        };
        assert_eq!(
            keys(&mut both.ours),
            keys(&mut both.theirs),
            "KEYS {pattern}"
        );
    }
}

#[test]
fn randomkey_draws_every_key_and_time_is_the_clock() {
    let dir = tempdir();
    let server = Server::start(dir.path(), &[]);
    let mut c = server.client();
    let random =
        |c: &mut redis::Connection| -> Option<String> { redis::cmd("RANDOMKEY").query(c).unwrap() };
    assert_eq!(random(&mut c), None, "an empty database has no random key");
    for k in ["a", "b", "c"] {
        let () = redis::cmd("SET").arg(k).arg("v").query(&mut c).unwrap();
    }
    let mut drawn = std::collections::BTreeSet::new();
    for _ in 0..200 {
        drawn.insert(random(&mut c).expect("a key"));
    }
    let all: std::collections::BTreeSet<String> = ["a", "b", "c"].map(String::from).into();
    assert_eq!(drawn, all, "200 draws of 3 keys reach each of them");

    let (secs, micros): (u64, u64) = redis::cmd("TIME").query(&mut c).unwrap();
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    assert!(micros < 1_000_000);
    assert!(
        now.as_secs().abs_diff(secs) <= 5,
        "TIME {secs} against {now:?}"
    );
}

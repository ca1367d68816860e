//! GETRANGE, SETRANGE, INCRBYFLOAT, TYPE, KEYS, RANDOMKEY, TIME and INFO's layout against a real
//! Redis 7: the same script goes to `redis-server` and to `ringkv serve`, and every
//! reply must be the same (KEYS compared as sets: neither server promises an order).
//! RANDOMKEY and TIME answer differently by nature; they are checked for what they
//! promise. INFO must have Redis's default sections, in its order, with the fields
//! clients read when they connect.
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
    "INCRBYFLOAT f 10.5",
    "INCRBYFLOAT f 0.1",
    "INCRBYFLOAT f -5.0e3",
    "INCRBYFLOAT f 3.0e3",
    "GET f",
    "SET g 0.1",
    "INCRBYFLOAT g 0.2",
    "SET g 17179869184",
    "INCRBYFLOAT g 1.5",
    "SET g 100000.1",
    "INCRBYFLOAT g 0.01",
    "INCRBYFLOAT g 1e20",
    "INCRBYFLOAT g -1e20",
    "SET g 1",
    "INCRBYFLOAT g -1",
    "INCRBYFLOAT g 0.0000000000000000001",
    "INCRBYFLOAT g x",
    "INCRBYFLOAT g 1.0x",
    "INCRBYFLOAT g \"\"",
    "INCRBYFLOAT g nan",
    "INCRBYFLOAT g inf",
    "INCRBYFLOAT g -inf",
    "INCRBYFLOAT g 1e4932",
    "SET h abc",
    "INCRBYFLOAT h 1",
    "SET t2 5 EX 1000",
    "INCRBYFLOAT t2 0.5",
    "TTL t2",
    "INCRBYFLOAT",
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

/// The `# Title` lines of an INFO reply, and its `name:value` fields by name.
fn info_layout(text: &str) -> (Vec<String>, std::collections::BTreeMap<String, String>) {
    let titles = text
        .lines()
        .filter(|l| l.starts_with("# "))
        .map(String::from);
    let fields = (text.lines())
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.to_owned(), v.to_owned()));
    (titles.collect(), fields.collect())
}

#[test]
fn info_has_redis_7s_default_sections_in_order_and_the_fields_clients_read() {
    let Some(mut both) = compare_with_redis(std::iter::empty()) else {
        return;
    };
    let info = |c: &mut redis::Connection| -> String { redis::cmd("INFO").query(c).unwrap() };
    let (their_titles, _) = info_layout(&info(&mut both.theirs));
    let (mut our_titles, fields) = info_layout(&info(&mut both.ours));
    assert_eq!(
        our_titles.pop().as_deref(),
        Some("# Cores"),
        "ringkv's own, last"
    );
    assert_eq!(our_titles, their_titles);
    for (name, want) in [
        ("redis_mode", Some("standalone")),
        ("arch_bits", Some("64")),
        ("role", Some("master")),
        ("connected_slaves", Some("0")),
        ("cluster_enabled", Some("0")),
        ("maxmemory", Some("0")),
        ("maxmemory_policy", Some("noeviction")),
        ("loading", Some("0")),
        ("rdb_bgsave_in_progress", Some("0")),
        ("aof_rewrite_in_progress", Some("0")),
        ("used_memory", None),
        ("used_memory_human", None),
        ("used_memory_peak", None),
        ("total_system_memory", None),
        ("used_cpu_sys", None),
        ("used_cpu_user", None),
        ("process_id", None),
        ("tcp_port", None),
        ("uptime_in_seconds", None),
        ("expired_keys", None),
        ("keyspace_hits", None),
    ] {
        let got = fields
            .get(name)
            .unwrap_or_else(|| panic!("INFO lacks {name}"));
        if let Some(want) = want {
            assert_eq!(got, want, "{name}");
        }
    }
    assert!(fields["used_memory"].parse::<u64>().unwrap() > 0);
}

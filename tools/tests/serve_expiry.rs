//! The expiry commands against a real Redis 7: the same script of commands goes to
//! `redis-server` and to `ringkv serve`, and every reply (values, integers, nils and
//! error texts) must be the same. Then a key given a few milliseconds really expires.
//! redis-server comes from Debian (`tools/install-test-deps.sh`), as for the other
//! external tests; RINGKV_SKIP_EXTERNAL=1 skips.

mod serve_support;

use std::time::Duration;

use serve_support::{Server, compare_with_redis, reply, tempdir};

/// 2100-01-01T00:00:00Z: far enough that nothing expires during the test.
const FAR: &str = "4102444800";

const SCRIPT: &[&str] = &[
    "SET k v",
    "TTL k",
    "TTL missing",
    "PTTL missing",
    "EXPIRETIME missing",
    "EXPIRETIME k",
    "EXPIRE k 1000",
    "TTL k",
    "EXPIRE k 1000 NX",
    "EXPIRE k 2000 xx",
    "EXPIRE k 1500 GT",
    "EXPIRE k 3000 gt",
    "EXPIRE k 2500 LT",
    "TTL k",
    "EXPIRE k 100 XX LT",
    "TTL k",
    // Not 100 again: whether now + 100 s is later than the expiry set a moment ago
    // depends on the millisecond each server saw.
    "EXPIRE k 50 XX GT",
    "EXPIRE k 200 XX GT",
    "TTL k",
    "EXPIRE k 100 NX XX",
    "EXPIRE k 100 GT LT",
    "EXPIRE k 100 FOO",
    "EXPIRE k abc",
    "EXPIRE k 9223372036854775807",
    "PEXPIRE k 9223372036854775807",
    "EXPIRE missing 100",
    "PERSIST k",
    "PERSIST k",
    "PERSIST missing",
    "TTL k",
    "EXPIRE k 100 GT",
    "EXPIRE k 100 LT",
    "TTL k",
    "EXPIREAT k FAR",
    "EXPIRETIME k",
    "PEXPIRETIME k",
    "PEXPIREAT k FAR123",
    "PEXPIRETIME k",
    "EXPIRETIME k",
    "SET k v2",
    "TTL k",
    "SET k v3 EX 100",
    "TTL k",
    "SET k v4 KEEPTTL",
    "TTL k",
    "GET k",
    "SET k v5 PX 200000 GET",
    "TTL k",
    "SET k v EX 0",
    "SET k v EX -1",
    "SET k v PX abc",
    "SET k v EX 10 PX 10",
    "SET k v KEEPTTL EX 10",
    "SET k v EX",
    "SET k v EXAT FAR",
    "EXPIRETIME k",
    "SET n v EX 100 NX",
    "TTL n",
    "SET n v2 NX EX 5",
    "SET n v2 XX EX 7",
    "TTL n",
    "SET c 5 EX 100",
    "INCR c",
    "TTL c",
    "APPEND c x",
    "TTL c",
    "GETSET c 1",
    "TTL c",
    "SETEX s 100 val",
    "TTL s",
    "GET s",
    "SETEX s 0 val",
    "SETEX s abc val",
    "PSETEX p 100000 val",
    "TTL p",
    "PSETEX p -5 val",
    "GETEX s",
    "TTL s",
    "GETEX s EX 200",
    "TTL s",
    "GETEX s PERSIST",
    "TTL s",
    "GETEX s PXAT FAR000",
    "EXPIRETIME s",
    "GETEX missing EX 10",
    "GETEX missing EX -1",
    "GETEX s EX -1",
    "GETEX s KEEPTTL",
    "GETEX s EX",
    "GETEX s EX 1 PX 2",
    "GETEX s EXAT 1",
    "GET s",
    "EXISTS s",
    "GETDEL p",
    "GET p",
    "GETDEL p",
    "EXPIRE k -1",
    "GET k",
    "SET k v",
    "PEXPIRE k 0",
    "EXISTS k",
    "SET k v",
    "EXPIREAT k 1",
    "EXISTS k",
    "EXPIREAT missing FAR",
    "TTL",
    "EXPIRE k",
    "GETDEL",
];

#[test]
fn expiry_commands_answer_as_redis_7_does() {
    compare_with_redis(SCRIPT.iter().map(|line| line.replace("FAR", FAR)));
}

#[test]
fn a_key_is_gone_once_its_time_has_passed() {
    let dir = tempdir();
    let server = Server::start(dir.path(), &[]);
    let mut c = server.client();
    for line in ["SET a v PX 50", "SETEX b 1 v", "SET c v", "PEXPIRE c 50"] {
        assert!(!reply(&mut c, line).starts_with("error"), "{line}");
    }
    let exists = |c: &mut redis::Connection| -> i64 {
        redis::cmd("EXISTS")
            .arg("a")
            .arg("b")
            .arg("c")
            .query(c)
            .unwrap()
    };
    assert_eq!(exists(&mut c), 3);
    let info: String = redis::cmd("INFO").arg("keyspace").query(&mut c).unwrap();
    assert!(info.contains("db0:keys=3,expires=3,"), "{info}");
    // 50 ms, 1 s and 50 ms to live: about 367 ms on average, less what has passed.
    let avg_ttl: u64 = (info.split("avg_ttl=").nth(1))
        .and_then(|rest| rest.trim().parse().ok())
        .unwrap_or_else(|| panic!("{info}"));
    assert!((1..=1_000).contains(&avg_ttl), "{info}");
    std::thread::sleep(Duration::from_millis(1_100));
    assert_eq!(exists(&mut c), 0);
    let size: i64 = redis::cmd("DBSIZE").query(&mut c).unwrap();
    assert_eq!(size, 0, "expired keys leave DBSIZE at once");
    let a: Option<String> = redis::cmd("GET").arg("a").query(&mut c).unwrap();
    assert_eq!(a, None);
    let ttl: i64 = redis::cmd("TTL").arg("c").query(&mut c).unwrap();
    assert_eq!(ttl, -2);
}

//! `ringkv serve` answers every command it lists, as Redis does, to a real client (the
//! `redis` crate) and to raw sockets (inline commands, RESP3 bytes).

mod serve_support;

use std::collections::{BTreeSet, HashMap};

use redis::Value;
use serve_support::{Server, connect, error_of, tempdir};

fn q<T: redis::FromRedisValue>(con: &mut redis::Connection, args: &[&str]) -> T {
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd.query(con)
        .unwrap_or_else(|e| panic!("{args:?} failed: {e}"))
}

fn err(con: &mut redis::Connection, args: &[&str]) -> String {
    let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
    error_of(con, &args)
}

#[test]
fn string_commands_answer_as_redis() {
    let dir = tempdir();
    let server = Server::start(dir.path(), &[]);
    let mut c = server.client();

    assert_eq!(q::<String>(&mut c, &["SET", "k", "v1"]), "OK");
    assert_eq!(q::<String>(&mut c, &["GET", "k"]), "v1");
    assert_eq!(q::<Option<String>>(&mut c, &["GET", "missing"]), None);
    // NX, XX, GET and their combinations.
    assert_eq!(q::<Option<String>>(&mut c, &["SET", "k", "v2", "NX"]), None);
    assert_eq!(
        q::<Option<String>>(&mut c, &["SET", "new", "n", "nx"]).as_deref(),
        Some("OK")
    );
    assert_eq!(
        q::<Option<String>>(&mut c, &["SET", "absent", "x", "XX"]),
        None
    );
    assert_eq!(q::<Option<String>>(&mut c, &["GET", "absent"]), None);
    assert_eq!(
        q::<Option<String>>(&mut c, &["SET", "k", "v3", "XX"]).as_deref(),
        Some("OK")
    );
    assert_eq!(
        q::<Option<String>>(&mut c, &["SET", "k", "v4", "GET"]).as_deref(),
        Some("v3")
    );
    assert_eq!(
        q::<Option<String>>(&mut c, &["SET", "k", "v5", "NX", "GET"]).as_deref(),
        Some("v4")
    );
    assert_eq!(q::<String>(&mut c, &["GET", "k"]), "v4");
    assert_eq!(q::<Option<String>>(&mut c, &["SET", "g", "1", "GET"]), None);
    assert!(err(&mut c, &["SET", "k", "v", "NX", "XX"]).contains("syntax error"));
    assert!(err(&mut c, &["SET", "k", "v", "BOGUS"]).contains("syntax error"));
    // The expiry options (compared with Redis itself in serve_expiry.rs).
    assert_eq!(q::<String>(&mut c, &["SET", "k", "v4", "EX", "100"]), "OK");
    assert_eq!(q::<i64>(&mut c, &["TTL", "k"]), 100);
    assert_eq!(q::<String>(&mut c, &["SET", "k", "v4", "KEEPTTL"]), "OK");
    assert_eq!(q::<i64>(&mut c, &["TTL", "k"]), 100);
    assert!(err(&mut c, &["SET", "k", "v", "EX", "0"]).contains("invalid expire time"));
    assert_eq!(q::<String>(&mut c, &["GET", "k"]), "v4");
    // SETNX, GETSET.
    assert_eq!(q::<i64>(&mut c, &["SETNX", "k", "x"]), 0);
    assert_eq!(q::<i64>(&mut c, &["SETNX", "sn", "x"]), 1);
    assert_eq!(
        q::<Option<String>>(&mut c, &["GETSET", "sn", "y"]).as_deref(),
        Some("x")
    );
    assert_eq!(q::<Option<String>>(&mut c, &["GETSET", "gs", "y"]), None);
    // MSET, MGET, EXISTS, DEL, UNLINK.
    assert_eq!(
        q::<String>(&mut c, &["MSET", "a", "1", "b", "2", "c", "3"]),
        "OK"
    );
    assert!(err(&mut c, &["MSET", "a", "1", "b"]).contains("wrong number of arguments"));
    assert_eq!(
        q::<Vec<Option<String>>>(&mut c, &["MGET", "a", "nope", "c"]),
        vec![Some("1".into()), None, Some("3".into())]
    );
    assert_eq!(q::<i64>(&mut c, &["EXISTS", "a", "b", "nope", "a"]), 3);
    assert_eq!(q::<i64>(&mut c, &["DEL", "a", "nope", "a"]), 1);
    assert_eq!(q::<i64>(&mut c, &["UNLINK", "b", "c"]), 2);
    assert_eq!(q::<i64>(&mut c, &["EXISTS", "a", "b", "c"]), 0);
    // Counters.
    assert_eq!(q::<i64>(&mut c, &["INCR", "n"]), 1);
    assert_eq!(q::<i64>(&mut c, &["INCRBY", "n", "41"]), 42);
    assert_eq!(q::<i64>(&mut c, &["DECR", "n"]), 41);
    assert_eq!(q::<i64>(&mut c, &["DECRBY", "n", "50"]), -9);
    assert_eq!(q::<String>(&mut c, &["GET", "n"]), "-9");
    assert!(err(&mut c, &["INCR", "k"]).contains("not an integer"));
    assert!(err(&mut c, &["INCRBY", "n", "x"]).contains("not an integer"));
    assert_eq!(
        q::<String>(&mut c, &["SET", "big", "9223372036854775807"]),
        "OK"
    );
    assert!(err(&mut c, &["INCR", "big"]).contains("overflow"));
    assert!(err(&mut c, &["DECRBY", "n", "-9223372036854775808"]).contains("overflow"));
    assert_eq!(q::<String>(&mut c, &["GET", "big"]), "9223372036854775807");
    // APPEND, STRLEN.
    assert_eq!(q::<i64>(&mut c, &["APPEND", "s", "hello"]), 5);
    assert_eq!(q::<i64>(&mut c, &["APPEND", "s", " world"]), 11);
    assert_eq!(q::<String>(&mut c, &["GET", "s"]), "hello world");
    assert_eq!(q::<i64>(&mut c, &["STRLEN", "s"]), 11);
    assert_eq!(q::<i64>(&mut c, &["STRLEN", "nope"]), 0);
    // Binary-safe keys and values.
    let key = [0u8, 255, 13, 10, 32];
    let value: Vec<u8> = (0..=255u8).collect();
    let _: () = redis::cmd("SET")
        .arg(&key[..])
        .arg(&value)
        .query(&mut c)
        .unwrap();
    let back: Vec<u8> = redis::cmd("GET").arg(&key[..]).query(&mut c).unwrap();
    assert_eq!(back, value);
    // Arity and unknown commands, worded as Redis.
    assert!(err(&mut c, &["GET"]).contains("wrong number of arguments for 'get' command"));
    assert!(err(&mut c, &["GET", "a", "b"]).contains("wrong number of arguments"));
    let unknown = err(&mut c, &["FOO", "bar", "baz"]);
    assert!(
        unknown.contains("unknown command 'FOO', with args beginning with: 'bar' 'baz'"),
        "{unknown}"
    );
    // A key over the limit is refused; the connection goes on.
    let long_key = "k".repeat(ringkv::KEY_LEN_MAX + 1);
    assert!(err(&mut c, &["SET", &long_key, "v"]).contains("limit"));
    assert!(err(&mut c, &["GET", &long_key]).contains("limit"));
    assert_eq!(q::<String>(&mut c, &["PING"]), "PONG");
}

#[test]
fn server_commands_answer_as_redis() {
    let dir = tempdir();
    let server = Server::start(dir.path(), &[]);
    let mut c = server.client();

    assert_eq!(q::<String>(&mut c, &["PING"]), "PONG");
    assert_eq!(q::<String>(&mut c, &["PING", "hi"]), "hi");
    assert_eq!(q::<String>(&mut c, &["ECHO", "echo me"]), "echo me");
    assert_eq!(q::<String>(&mut c, &["SELECT", "0"]), "OK");
    assert!(err(&mut c, &["SELECT", "1"]).contains("out of range"));
    // CLIENT.
    assert_eq!(q::<Option<String>>(&mut c, &["CLIENT", "GETNAME"]), None);
    assert_eq!(
        q::<String>(&mut c, &["CLIENT", "SETNAME", "worker-1"]),
        "OK"
    );
    assert_eq!(q::<String>(&mut c, &["CLIENT", "GETNAME"]), "worker-1");
    assert!(err(&mut c, &["CLIENT", "SETNAME", "has space"]).contains("cannot contain spaces"));
    assert!(q::<i64>(&mut c, &["CLIENT", "ID"]) > 0);
    assert!(q::<String>(&mut c, &["CLIENT", "INFO"]).contains("name=worker-1"));
    assert!(err(&mut c, &["CLIENT", "KILL", "x"]).contains("unknown subcommand"));
    // COMMAND.
    let count: i64 = q(&mut c, &["COMMAND", "COUNT"]);
    let all: Vec<Value> = q(&mut c, &["COMMAND"]);
    assert_eq!(all.len() as i64, count);
    assert!(count >= 29);
    let info: Vec<Value> = q(&mut c, &["COMMAND", "INFO", "get", "nosuch"]);
    let Value::Array(get) = &info[0] else {
        panic!("{info:?}")
    };
    assert_eq!(get[0], Value::BulkString(b"get".to_vec()));
    assert_eq!(get[1], Value::Int(2));
    assert_eq!(info[1], Value::Nil);
    let docs: Value = q(&mut c, &["COMMAND", "DOCS", "set"]);
    assert!(
        format!("{docs:?}").contains("Sets the string value"),
        "{docs:?}"
    );
    let list: Vec<String> = q(&mut c, &["COMMAND", "LIST"]);
    assert!(list.contains(&"scan".to_string()));
    // CONFIG GET: what redis-benchmark asks, and patterns.
    let config: HashMap<String, String> = q(&mut c, &["CONFIG", "GET", "save"]);
    assert_eq!(config.get("save").map(String::as_str), Some(""));
    let config: HashMap<String, String> =
        q(&mut c, &["CONFIG", "GET", "appendonly", "appendfsync"]);
    assert_eq!(config["appendonly"], "yes");
    assert_eq!(config["appendfsync"], "always");
    let config: HashMap<String, String> = q(&mut c, &["CONFIG", "GET", "max*"]);
    assert!(config.contains_key("maxclients"), "{config:?}");
    assert!(err(&mut c, &["CONFIG", "SET", "save", ""]).contains("not supported"));
    // DBSIZE, INFO, FLUSHDB.
    for i in 0..50 {
        let _: () = redis::cmd("SET")
            .arg(format!("key{i}"))
            .arg(i)
            .query(&mut c)
            .unwrap();
    }
    assert_eq!(q::<i64>(&mut c, &["DBSIZE"]), 50);
    let info: String = q(&mut c, &["INFO"]);
    for needle in [
        "# Server",
        "redis_version:",
        "# Clients",
        "connected_clients:1",
        "# Stats",
        "total_commands_processed:",
        "# Persistence",
        "durability:sync",
        "# Keyspace",
        "db0:keys=50,expires=0",
        "# Cores",
        "core0:keys=",
        "core1:keys=",
    ] {
        assert!(info.contains(needle), "{needle} missing from INFO:\n{info}");
    }
    let keyspace: String = q(&mut c, &["INFO", "keyspace"]);
    assert!(keyspace.contains("db0:keys=50") && !keyspace.contains("# Server"));
    let per_core: u64 = info
        .lines()
        .filter(|l| l.starts_with("core"))
        .map(|l| {
            l.split("keys=")
                .nth(1)
                .unwrap()
                .split(',')
                .next()
                .unwrap()
                .parse::<u64>()
                .unwrap()
        })
        .sum();
    assert_eq!(per_core, 50);
    assert_eq!(q::<String>(&mut c, &["FLUSHDB"]), "OK");
    assert_eq!(q::<i64>(&mut c, &["DBSIZE"]), 0);
    assert_eq!(q::<Option<String>>(&mut c, &["GET", "key1"]), None);
    assert!(err(&mut c, &["FLUSHDB", "NOW"]).contains("syntax error"));
    assert_eq!(q::<String>(&mut c, &["QUIT"]), "OK");
}

fn scan_all(c: &mut redis::Connection, extra: &[&str]) -> (Vec<String>, usize) {
    let mut cursor = "0".to_string();
    let mut keys = Vec::new();
    let mut calls = 0;
    loop {
        let mut args = vec!["SCAN", cursor.as_str()];
        args.extend_from_slice(extra);
        let (next, page): (String, Vec<String>) = q(c, &args);
        keys.extend(page);
        calls += 1;
        if next == "0" {
            return (keys, calls);
        }
        cursor = next;
    }
}

#[test]
fn scan_returns_every_key_present_throughout_once() {
    let dir = tempdir();
    let server = Server::start(dir.path(), &[]);
    let mut c = server.client();
    let mut expected = BTreeSet::new();
    for i in 0..300 {
        let key = format!("user:{i}");
        let _: () = redis::cmd("SET").arg(&key).arg(i).query(&mut c).unwrap();
        expected.insert(key);
    }
    let _: () = redis::cmd("SET").arg("other").arg(1).query(&mut c).unwrap();

    let (keys, calls) = scan_all(&mut c, &["COUNT", "20"]);
    assert!(calls >= 15, "{calls} calls");
    let unique: BTreeSet<String> = keys.iter().cloned().collect();
    assert_eq!(unique.len(), keys.len(), "a key came back twice");
    assert_eq!(unique.len(), 301);

    let (matched, _) = scan_all(&mut c, &["MATCH", "user:1?", "COUNT", "50"]);
    let matched: BTreeSet<String> = matched.into_iter().collect();
    let want: BTreeSet<String> = (10..20).map(|i| format!("user:{i}")).collect();
    assert_eq!(matched, want);
    let (none, _) = scan_all(&mut c, &["TYPE", "hash"]);
    assert!(none.is_empty());

    // Writes during a scan: keys present throughout all come back, deleted ones not.
    let (first_next, first): (String, Vec<String>) = q(&mut c, &["SCAN", "0", "COUNT", "100"]);
    for i in 0..100 {
        let _: () = redis::cmd("DEL")
            .arg(format!("user:{i}"))
            .query(&mut c)
            .unwrap();
        let _: () = redis::cmd("SET")
            .arg(format!("late:{i}"))
            .arg(i)
            .query(&mut c)
            .unwrap();
    }
    let mut cursor = first_next;
    let mut rest = Vec::new();
    while cursor != "0" {
        let (next, page): (String, Vec<String>) = q(&mut c, &["SCAN", &cursor, "COUNT", "100"]);
        rest.extend(page);
        cursor = next;
    }
    let seen: BTreeSet<String> = first.into_iter().chain(rest.iter().cloned()).collect();
    for i in 100..300 {
        assert!(seen.contains(&format!("user:{i}")), "user:{i} missed");
    }
    assert!(
        !rest
            .iter()
            .any(|k| k.starts_with("user:") && k[5..].parse::<u32>().unwrap() < 100)
    );

    // A cursor outlives its snapshot (here: the server): the scan resumes where it was.
    let (next, page): (String, Vec<String>) = q(&mut c, &["SCAN", "0", "COUNT", "60"]);
    drop(c);
    assert_eq!(
        server.signal(nix::sys::signal::Signal::SIGTERM).code(),
        Some(0)
    );
    let server = Server::start(dir.path(), &[]);
    let mut c = server.client();
    let mut seen: BTreeSet<String> = page.into_iter().collect();
    let mut cursor = next;
    while cursor != "0" {
        let (next, page): (String, Vec<String>) = q(&mut c, &["SCAN", &cursor, "COUNT", "60"]);
        seen.extend(page);
        cursor = next;
    }
    let all: BTreeSet<String> = scan_all(&mut c, &[]).0.into_iter().collect();
    assert_eq!(seen, all);
    assert!(err(&mut c, &["SCAN", "x"]).contains("invalid cursor"));
    assert!(err(&mut c, &["SCAN", "0", "COUNT", "0"]).contains("syntax error"));
}

#[test]
fn pipelined_commands_answer_in_order() {
    let dir = tempdir();
    let server = Server::start(dir.path(), &[]);
    let mut c = server.client();
    let mut pipe = redis::pipe();
    for i in 0..400 {
        pipe.cmd("SET").arg(format!("p{i}")).arg(i);
        pipe.cmd("GET").arg(format!("p{i}"));
        pipe.cmd("INCR").arg("counter");
        pipe.cmd("APPEND").arg("log").arg(format!("{i},"));
    }
    pipe.cmd("GET").arg("counter");
    let replies: Vec<Value> = pipe.query(&mut c).unwrap();
    assert_eq!(replies.len(), 1601);
    let mut log_len = 0;
    for i in 0..400usize {
        assert_eq!(replies[4 * i], Value::Okay);
        assert_eq!(
            replies[4 * i + 1],
            Value::BulkString(i.to_string().into_bytes())
        );
        assert_eq!(replies[4 * i + 2], Value::Int(i as i64 + 1));
        log_len += format!("{i},").len();
        assert_eq!(replies[4 * i + 3], Value::Int(log_len as i64));
    }
    assert_eq!(replies[1600], Value::BulkString(b"400".to_vec()));
    let log: String = q(&mut c, &["GET", "log"]);
    let expected: String = (0..400).map(|i| format!("{i},")).collect();
    assert_eq!(log, expected);

    // Consecutive SETs of one key: only the last one's value stays, each is answered,
    // and a read between two of them sees the one before it.
    let mut pipe = redis::pipe();
    for i in 0..300 {
        pipe.cmd("SET").arg("hot").arg(i);
        if i % 100 == 50 {
            pipe.cmd("GET").arg("hot");
        }
    }
    pipe.cmd("GET").arg("hot");
    let replies: Vec<Value> = pipe.query(&mut c).unwrap();
    let reads: Vec<&Value> = replies.iter().filter(|v| **v != Value::Okay).collect();
    let want: Vec<Value> = ["50", "150", "250", "299"]
        .iter()
        .map(|v| Value::BulkString(v.as_bytes().to_vec()))
        .collect();
    assert_eq!(reads, want.iter().collect::<Vec<_>>());
    assert_eq!(replies.len(), 304);

    // One write holding many commands, answered in one stream.
    let mut raw = server.raw();
    let mut request = Vec::new();
    let mut expected = Vec::new();
    for i in 0..500 {
        let v = format!("v{i}");
        request.extend_from_slice(
            format!(
                "*3\r\n$3\r\nSET\r\n$2\r\nrk\r\n${}\r\n{v}\r\n*2\r\n$3\r\nGET\r\n$2\r\nrk\r\n",
                v.len()
            )
            .as_bytes(),
        );
        expected.extend_from_slice(format!("+OK\r\n${}\r\n{v}\r\n", v.len()).as_bytes());
    }
    raw.send(&request);
    raw.expect(&expected);
}

#[test]
fn pipelined_commands_on_one_key_keep_their_order_when_reads_wait_for_the_disk() {
    let dir = tempdir();
    let server = Server::start(dir.path(), &["--durability", "buffered"]);
    let mut c = server.client();
    let value = "v".repeat(3000);
    let mut pipe = redis::pipe();
    for i in 0..200 {
        pipe.cmd("SET").arg(format!("d{i}")).arg(&value).ignore();
    }
    let () = pipe.query(&mut c).unwrap();
    drop(c);
    assert_eq!(
        server.signal(nix::sys::signal::Signal::SIGTERM).code(),
        Some(0)
    );
    // After a restart without a read cache every read goes to the disk, so a GET that
    // ran beside the APPEND before it would see the old value.
    let server = Server::start(dir.path(), &["--cache-bytes", "0"]);
    let mut c = server.client();
    let mut pipe = redis::pipe();
    for i in 0..200 {
        pipe.cmd("APPEND").arg(format!("d{i}")).arg("+");
        pipe.cmd("GET").arg(format!("d{i}"));
        pipe.cmd("STRLEN").arg(format!("d{}", (i + 1) % 200));
    }
    let replies: Vec<Value> = pipe.query(&mut c).unwrap();
    for i in 0..200 {
        assert_eq!(replies[3 * i], Value::Int(3001));
        let Value::BulkString(got) = &replies[3 * i + 1] else {
            panic!("{:?}", replies[3 * i + 1])
        };
        assert_eq!(got.len(), 3001, "GET d{i} ran before the APPEND before it");
        let expected = if i == 199 { 3001 } else { 3000 };
        assert_eq!(replies[3 * i + 2], Value::Int(expected));
    }
}

#[test]
fn inline_commands_over_a_raw_socket() {
    let dir = tempdir();
    let server = Server::start(dir.path(), &[]);
    let mut raw = server.raw();
    raw.send(b"PING\r\n");
    raw.expect(b"+PONG\r\n");
    raw.send(b"SET greeting \"hello world\\n\"\r\n\r\nGET greeting\nexists greeting nope\r\n");
    raw.expect(b"+OK\r\n$12\r\nhello world\n\r\n:1\r\n");
    raw.send(b"set 'it''s' x\r\n");
    raw.expect(b"-ERR Protocol error: unbalanced quotes in request\r\n");
    assert!(raw.read_to_close().is_empty());
    let mut c = server.client();
    assert_eq!(q::<String>(&mut c, &["GET", "greeting"]), "hello world\n");
}

#[test]
fn resp3_after_hello_3() {
    let dir = tempdir();
    let server = Server::start(dir.path(), &[]);
    let mut c = connect(&format!("{}?protocol=resp3", server.url()));
    let hello: Value = q(&mut c, &["HELLO", "3"]);
    let Value::Map(pairs) = hello else {
        panic!("HELLO 3 answered {hello:?}")
    };
    let proto = pairs
        .iter()
        .find(|(k, _)| *k == Value::BulkString(b"proto".to_vec()))
        .map(|(_, v)| v.clone());
    assert_eq!(proto, Some(Value::Int(3)));
    assert_eq!(q::<Value>(&mut c, &["GET", "missing"]), Value::Nil);
    let config: Value = q(&mut c, &["CONFIG", "GET", "save"]);
    assert!(matches!(config, Value::Map(_)), "{config:?}");
    let info: Value = q(&mut c, &["INFO", "server"]);
    assert!(matches!(info, Value::VerbatimString { .. }), "{info:?}");

    // The bytes themselves.
    let mut raw = server.raw();
    raw.send(b"GET nope\r\n");
    raw.expect(b"$-1\r\n");
    raw.send(b"HELLO 4\r\n");
    raw.expect(b"-NOPROTO unsupported protocol version\r\n");
    raw.send(b"HELLO 3\r\n");
    let head = raw.read_exactly(3);
    assert_eq!(&head, b"%8\r");
    let mut rest = Vec::new();
    while !rest.ends_with(b"modules\r\n*0\r\n") {
        rest.extend(raw.read_exactly(1));
    }
    raw.send(b"GET nope\r\nMGET nope\r\nCONFIG GET save\r\n");
    raw.expect(b"_\r\n*1\r\n_\r\n%1\r\n$4\r\nsave\r\n$0\r\n\r\n");
    raw.send(b"HELLO 2\r\n");
    let head = raw.read_exactly(4);
    assert_eq!(&head, b"*16\r");
}

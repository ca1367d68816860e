//! The real `ringkv` binary over real directories: verify, dump | load, get/put/del and
//! their exit codes, stats and compact, checkpoint and restore. Progress bars never
//! reach a pipe.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use ringkv::{Db, Options};

fn tempdir() -> tempfile::TempDir {
    // On the work tree's disk: O_DIRECT needs a real file system, not tmpfs.
    tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap()
}

fn ringkv_in(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ringkv"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut pipe = child.stdin.take().unwrap();
    let input = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = pipe.write_all(&input); // a command that stops reading early is fine
    });
    let output = child.wait_with_output().unwrap();
    writer.join().unwrap();
    output
}

fn ringkv(args: &[&str]) -> Output {
    ringkv_in(args, b"")
}

fn code(output: &Output) -> i32 {
    output.status.code().expect("exited")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn path(dir: &Path) -> &str {
    dir.to_str().unwrap()
}

fn options() -> Options {
    Options::default()
        .cores(1)
        .extent_size_bytes(64 << 10)
        .background_compaction(false)
}

fn filled(dir: &Path, n: usize) {
    let db = Db::open(dir, options()).unwrap();
    for i in 0..n {
        db.put(format!("key-{i:05}"), format!("value-{i:05}-").repeat(30))
            .unwrap();
    }
    db.close().unwrap();
}

/// The first extent of a leaf that has a second one: sealed.
fn a_sealed_extent(dir: &Path) -> PathBuf {
    let mut leaves: Vec<PathBuf> = std::fs::read_dir(dir.join("substores"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    leaves.sort();
    leaves
        .into_iter()
        .find(|l| l.join("0000000000000002.ext").exists())
        .expect("a leaf with two extents")
        .join("0000000000000001.ext")
}

fn entries(dir: &Path) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let db = Db::open(dir, options()).unwrap();
    let mut all = BTreeMap::new();
    db.for_each(|k, v| {
        all.insert(k.to_vec(), v.to_vec());
    })
    .unwrap();
    db.close().unwrap();
    all
}

#[test]
fn verify_passes_on_a_healthy_directory_and_names_a_flipped_byte() {
    let dir = tempdir();
    filled(dir.path(), 4000);
    let healthy = ringkv(&["verify", path(dir.path())]);
    assert_eq!(
        code(&healthy),
        0,
        "{}{}",
        stdout(&healthy),
        stderr(&healthy)
    );
    assert!(
        stdout(&healthy).contains("4000 keys"),
        "{}",
        stdout(&healthy)
    );
    assert!(stdout(&healthy).contains("0 problems, 0 notes"));
    assert_eq!(stderr(&healthy), "", "no progress bar on a pipe");

    let extent = a_sealed_extent(dir.path());
    let mut bytes = std::fs::read(&extent).unwrap();
    let value_at = bytes.windows(6).position(|w| w == b"value-").unwrap();
    bytes[value_at + 50] ^= 0x08;
    std::fs::write(&extent, &bytes).unwrap();
    let damaged = ringkv(&["verify", path(dir.path())]);
    assert_eq!(code(&damaged), 1, "{}", stdout(&damaged));
    let expected = format!(
        "problem: {} at offset 64: record checksum mismatch",
        extent.display()
    );
    assert!(stdout(&damaged).contains(&expected), "{}", stdout(&damaged));
    assert!(stdout(&damaged).contains("1 problem, 0 notes"));

    let json = ringkv(&["verify", path(dir.path()), "--json"]);
    assert_eq!(code(&json), 1);
    let report: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(report["ok"], false);
    assert_eq!(report["problems"][0]["path"], extent.display().to_string());
    assert_eq!(report["problems"][0]["offset"], 64);
    assert_eq!(report["keys"], 4000);
    // Verify changed nothing: the damage is still there, the file as it was.
    assert_eq!(std::fs::read(&extent).unwrap(), bytes);
}

#[test]
fn verify_refuses_a_directory_another_process_has_open() {
    let dir = tempdir();
    let db = Db::open(dir.path(), options()).unwrap();
    db.put("k", "v").unwrap();
    for command in ["verify", "get", "stats"] {
        let mut args = vec![command, path(dir.path())];
        if command == "get" {
            args.push("k");
        }
        let out = ringkv(&args);
        assert_eq!(code(&out), 2, "{command}");
        assert!(stdout(&out).is_empty(), "{command}");
        assert!(
            stderr(&out).contains("is in use"),
            "{command}: {}",
            stderr(&out)
        );
        assert!(stderr(&out).contains("ringkv serve"), "{}", stderr(&out));
    }
    db.close().unwrap();
    assert_eq!(code(&ringkv(&["verify", path(dir.path())])), 0);
}

#[test]
fn dump_then_load_round_trips_binary_keys_and_values() {
    let source = tempdir();
    let mut expected: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
    expected.insert(b"".to_vec(), b"the empty key".to_vec());
    expected.insert(b"empty value".to_vec(), b"".to_vec());
    expected.insert(b"\0\xff\xfe\n\"\\".to_vec(), b"\0".to_vec());
    expected.insert("ünïcode ✓".as_bytes().to_vec(), "😀\n".as_bytes().to_vec());
    expected.insert(
        b"large".to_vec(),
        (0..100_000).map(|i| (i % 251) as u8).collect(),
    );
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for _ in 0..500 {
        let key_len = 1 + next() % 40;
        let key: Vec<u8> = (0..key_len).map(|_| next() as u8).collect();
        let value_len = next() % 300;
        let value: Vec<u8> = (0..value_len).map(|_| next() as u8).collect();
        expected.insert(key, value);
    }
    let db = Db::open(source.path(), options()).unwrap();
    for (k, v) in &expected {
        db.put(k, v).unwrap();
    }
    db.close().unwrap();

    let dump = ringkv(&["dump", path(source.path())]);
    assert_eq!(code(&dump), 0, "{}", stderr(&dump));
    assert_eq!(stderr(&dump), "", "no progress bar on a pipe");
    assert_eq!(
        dump.stdout.iter().filter(|&&b| b == b'\n').count(),
        expected.len()
    );

    let copy = tempdir();
    let target = copy.path().join("copy"); // load creates the database
    let load = ringkv_in(&["load", target.to_str().unwrap()], &dump.stdout);
    assert_eq!(code(&load), 0, "{}", stderr(&load));
    assert_eq!(
        stdout(&load),
        format!("loaded {} entries\n", expected.len())
    );
    assert_eq!(stderr(&load), "");
    assert_eq!(entries(&target), expected);

    // Everything in base64 loads to the same entries, and dumps the same lines again.
    let b64 = ringkv(&["dump", path(source.path()), "--base64"]);
    assert!(!stdout(&b64).contains("\"key\":\""));
    let again = copy.path().join("again");
    assert_eq!(
        code(&ringkv_in(&["load", again.to_str().unwrap()], &b64.stdout)),
        0
    );
    assert_eq!(entries(&again), expected);
    let lines = |out: &Output| {
        let mut lines: Vec<Vec<u8>> = out
            .stdout
            .split(|&b| b == b'\n')
            .map(<[u8]>::to_vec)
            .collect();
        lines.sort();
        lines
    };
    assert_eq!(
        lines(&ringkv(&["dump", again.to_str().unwrap()])),
        lines(&dump)
    );
}

#[test]
fn load_stops_at_a_malformed_line_and_names_it() {
    let dir = tempdir();
    let input = b"{\"key\":\"a\",\"value\":\"1\"}\n\n{\"key\":{\"base64\":\"AP8=\"},\"value\":\"2\"}\n{\"key\":\"c\",\"value\":3}\n{\"key\":\"d\",\"value\":\"4\"}\n";
    let out = ringkv_in(&["load", path(dir.path())], input);
    assert_eq!(code(&out), 2);
    assert!(
        stderr(&out).contains("stdin line 4: \"value\" must be"),
        "{}",
        stderr(&out)
    );
    // The lines before it were stored, the ones after were not.
    let all = entries(dir.path());
    assert_eq!(all.len(), 2);
    assert_eq!(all[&b"\0\xff"[..]], b"2");

    let too_long = format!("{{\"key\":\"{}\",\"value\":\"\"}}\n", "k".repeat(5000));
    let out = ringkv_in(&["load", path(dir.path())], too_long.as_bytes());
    assert_eq!(code(&out), 2);
    assert!(
        stderr(&out).contains("stdin line 1: key is 5000 bytes"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn load_keeps_the_last_line_of_a_repeated_key() {
    let dir = tempdir();
    let mut input = String::new();
    let mut last = BTreeMap::new();
    for i in 0..3000 {
        let key = format!("k{}", i % 7 + (i / 500) % 3);
        input += &format!("{{\"key\":\"{key}\",\"value\":\"{i}\"}}\n");
        last.insert(key.into_bytes(), i.to_string().into_bytes());
    }
    let out = ringkv_in(&["load", path(dir.path())], input.as_bytes());
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(stdout(&out), "loaded 3000 entries\n");
    assert_eq!(entries(dir.path()), last);
}

#[test]
fn get_put_del_and_their_exit_codes() {
    let dir = tempdir();
    let d = path(dir.path());
    assert_eq!(code(&ringkv(&["put", d, "greeting", "hello"])), 0);
    let got = ringkv(&["get", d, "greeting"]);
    assert_eq!((code(&got), stdout(&got).as_str()), (0, "hello\n"));
    let raw = ringkv(&["get", d, "greeting", "--raw"]);
    assert_eq!(raw.stdout, b"hello");
    let missing = ringkv(&["get", d, "nobody"]);
    assert_eq!(code(&missing), 1);
    assert!(missing.stdout.is_empty() && missing.stderr.is_empty());

    // Binary keys and values: hex, or a value from stdin.
    assert_eq!(code(&ringkv(&["put", d, "00ff0a", "cafe00", "--hex"])), 0);
    let hex = ringkv(&["get", d, "00FF0A", "--hex"]);
    assert_eq!(stdout(&hex), "cafe00\n");
    let value = b"\0\x01binary\xff\n";
    let put = ringkv_in(&["put", d, "blob", "--value-file", "-"], value);
    assert_eq!(code(&put), 0, "{}", stderr(&put));
    assert_eq!(ringkv(&["get", d, "blob", "--raw"]).stdout, value);
    let empty = ringkv_in(&["put", d, "nothing", "--value-file", "-"], b"");
    assert_eq!(code(&empty), 0);
    assert_eq!(stdout(&ringkv(&["get", d, "nothing"])), "\n");

    assert_eq!(code(&ringkv(&["del", d, "greeting"])), 0);
    assert_eq!(code(&ringkv(&["get", d, "greeting"])), 1);
    assert_eq!(
        code(&ringkv(&["del", d, "greeting"])),
        0,
        "a missing key is not an error"
    );
    assert_eq!(code(&ringkv(&["del", d, "00ff0a", "--hex"])), 0);
    assert_eq!(code(&ringkv(&["get", d, "00ff0a", "--hex"])), 1);

    // Errors: 2, said on stderr.
    let bad_hex = ringkv(&["get", d, "xyz", "--hex"]);
    assert_eq!(code(&bad_hex), 2);
    assert!(stderr(&bad_hex).contains("not hex"), "{}", stderr(&bad_hex));
    let elsewhere = tempdir();
    let not_db = ringkv(&["get", path(elsewhere.path()), "k"]);
    assert_eq!(code(&not_db), 2);
    assert!(stderr(&not_db).contains("is not a ringkv database"));
    assert_eq!(
        std::fs::read_dir(elsewhere.path()).unwrap().count(),
        0,
        "nothing created"
    );
    assert_eq!(code(&ringkv(&["put", d, "k"])), 2, "a value is required");
    assert_eq!(code(&ringkv(&["put", d, "k", "v", "--value-file", "-"])), 2);
}

#[test]
fn stats_and_compact() {
    let dir = tempdir();
    filled(dir.path(), 3000);
    filled(dir.path(), 3000); // every value again: the first copies are garbage
    let stats = |extra: &[&str]| -> serde_json::Value {
        let mut args = vec!["stats", path(dir.path()), "--json"];
        args.extend_from_slice(extra);
        let out = ringkv(&args);
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let before = stats(&[]);
    assert_eq!(before["totals"]["keys"], 3000);
    assert_eq!(before["substores"], 16);
    assert_eq!(before["cores"].as_array().unwrap().len(), 1);
    assert_eq!(before["cores"][0]["leaves"].as_array().unwrap().len(), 16);
    let garbage = before["totals"]["garbage_bytes"].as_u64().unwrap();
    let disk = before["totals"]["disk_bytes"].as_u64().unwrap();
    assert!(garbage * 2 > disk, "{garbage} of {disk}");
    let leaf_keys: u64 = before["cores"][0]["leaves"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["keys"].as_u64().unwrap())
        .sum();
    assert_eq!(leaf_keys, 3000);

    let table = ringkv(&["stats", path(dir.path())]);
    assert!(
        stdout(&table).contains("04-f000000000000000"),
        "{}",
        stdout(&table)
    );
    assert!(stdout(&table).lines().last().unwrap().starts_with("total"));

    let compact = ringkv(&["compact", path(dir.path())]);
    assert_eq!(code(&compact), 0, "{}", stderr(&compact));
    assert!(
        stdout(&compact).starts_with("compacted "),
        "{}",
        stdout(&compact)
    );
    assert_eq!(stderr(&compact), "");
    let after = stats(&["--cores", "2"]);
    assert_eq!(after["cores"].as_array().unwrap().len(), 2);
    assert_eq!(after["totals"]["keys"], 3000);
    assert!(after["totals"]["garbage_bytes"].as_u64().unwrap() * 4 < garbage);
    assert_eq!(code(&ringkv(&["verify", path(dir.path())])), 0);
}

/// The newest extent of the leaf holding `key`, and the offset of `needle` in it.
fn newest_extent_holding(dir: &Path, needle: &[u8]) -> (PathBuf, usize) {
    for leaf in std::fs::read_dir(dir.join("substores")).unwrap() {
        let leaf = leaf.unwrap().path();
        let mut extents: Vec<PathBuf> = std::fs::read_dir(&leaf)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "ext"))
            .collect();
        extents.sort();
        let Some(newest) = extents.pop() else {
            continue;
        };
        let bytes = std::fs::read(&newest).unwrap();
        if let Some(at) = bytes.windows(needle.len()).position(|w| w == needle) {
            return (newest, at);
        }
    }
    panic!("no newest extent holds {needle:?}");
}

#[test]
fn a_flipped_byte_in_the_newest_extent_is_refused_and_salvage_keeps_the_rest() {
    let dir = tempdir();
    filled(dir.path(), 2000);
    let (extent, at) = newest_extent_holding(dir.path(), b"value-01990-");
    let mut bytes = std::fs::read(&extent).unwrap();
    bytes[at] ^= 0x40;
    std::fs::write(&extent, &bytes).unwrap();

    let refused = ringkv(&["get", path(dir.path()), "key-00001"]);
    assert_eq!(code(&refused), 2, "{}", stderr(&refused));
    assert!(stderr(&refused).contains("salvage"), "{}", stderr(&refused));
    assert_eq!(
        std::fs::read(&extent).unwrap(),
        bytes,
        "open changed nothing"
    );
    let verify = ringkv(&["verify", path(dir.path())]);
    assert_eq!(code(&verify), 1, "{}", stdout(&verify));

    let salvage = ringkv(&["salvage", path(dir.path())]);
    assert_eq!(code(&salvage), 0, "{}", stderr(&salvage));
    assert!(
        stdout(&salvage).contains("1 damaged stretches"),
        "{}",
        stdout(&salvage)
    );
    let quarantined: Vec<_> = std::fs::read_dir(extent.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("quarantine-") && n.ends_with(".bin"))
        .collect();
    assert_eq!(quarantined.len(), 1, "{quarantined:?}");

    let verify = ringkv(&["verify", path(dir.path())]);
    assert_eq!(code(&verify), 0, "{}", stdout(&verify));
    let all = entries(dir.path());
    assert_eq!(all.len(), 1999, "every key but the damaged one");
    assert!(!all.contains_key(&b"key-01990"[..]));
    let again = ringkv(&["salvage", path(dir.path())]);
    assert!(
        stdout(&again).contains("nothing to salvage"),
        "{}",
        stdout(&again)
    );
}

#[test]
fn checkpoint_and_restore_copy_a_database_without_changing_it() {
    let dir = tempdir();
    let db = dir.path().join("db");
    filled(&db, 2_000);
    let backup = dir.path().join("backup");
    let done = ringkv(&["checkpoint", path(&db), path(&backup)]);
    assert_eq!(code(&done), 0, "{}", stderr(&done));
    assert!(stdout(&done).contains("files linked"), "{}", stdout(&done));
    // Reads of the checkpoint open it read-only, and it verifies clean.
    let get = ringkv(&["get", path(&backup), "key-01999"]);
    assert_eq!(stdout(&get), format!("{}\n", "value-01999-".repeat(30)));
    assert_eq!(code(&ringkv(&["stats", path(&backup)])), 0);
    assert_eq!(code(&ringkv(&["verify", path(&backup)])), 0);
    // The source goes on; the backup keeps what it had.
    assert_eq!(code(&ringkv(&["del", path(&db), "key-01999"])), 0);
    let restored = dir.path().join("restored");
    let done = ringkv(&["restore", path(&backup), path(&restored)]);
    assert_eq!(code(&done), 0, "{}", stderr(&done));
    assert_eq!(entries(&restored).len(), 2_000);
    assert_eq!(entries(&db).len(), 1_999);
    // An existing target is refused.
    let again = ringkv(&["checkpoint", path(&db), path(&backup)]);
    assert_eq!(code(&again), 2);
    assert!(stderr(&again).contains("exists"), "{}", stderr(&again));
}

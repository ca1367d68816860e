//! SAVE, BGSAVE and LASTSAVE: each save is a checkpoint in the save directory that opens
//! as a database holding what was acknowledged before it; older ones beyond
//! `--save-keep` go; INFO's persistence section follows.

mod serve_support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serve_support::{Server, tempdir};

fn checkpoints(dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    found.sort();
    found
}

fn info_field(con: &mut redis::Connection, field: &str) -> String {
    let info: String = redis::cmd("INFO").arg("persistence").query(con).unwrap();
    let line = info.lines().find(|l| l.starts_with(&format!("{field}:")));
    line.unwrap_or_else(|| panic!("no {field} in {info}"))[field.len() + 1..].to_owned()
}

#[test]
fn saves_are_checkpoints_that_open_as_databases() {
    let dir = tempdir();
    let data = dir.path().join("data");
    let saves = dir.path().join("saves");
    let save_dir = saves.to_str().unwrap();
    let server = Server::start(&data, &["--save-dir", save_dir, "--save-keep", "2"]);
    let mut c = server.client();
    for i in 0..500 {
        let () = redis::cmd("SET")
            .arg(format!("k{i}"))
            .arg(i)
            .query(&mut c)
            .unwrap();
    }
    let before: i64 = redis::cmd("LASTSAVE").query(&mut c).unwrap();
    let () = redis::cmd("SAVE").query(&mut c).unwrap();
    let after: i64 = redis::cmd("LASTSAVE").query(&mut c).unwrap();
    assert!(after >= before);
    let first = checkpoints(&saves);
    assert_eq!(first.len(), 1, "{first:?}");
    assert_eq!(
        info_field(&mut c, "rdb_last_checkpoint"),
        first[0].display().to_string()
    );
    // Three background saves while writes go on: two are kept.
    for round in 0..3 {
        let () = redis::cmd("SET")
            .arg("round")
            .arg(round)
            .query(&mut c)
            .unwrap();
        let started: String = redis::cmd("BGSAVE").arg("SCHEDULE").query(&mut c).unwrap();
        assert!(started.starts_with("Background saving"), "{started}");
        let deadline = Instant::now() + Duration::from_secs(30);
        while info_field(&mut c, "rdb_bgsave_in_progress") != "0" {
            assert!(Instant::now() < deadline, "a save that never ends");
            std::thread::sleep(Duration::from_millis(10));
        }
        std::thread::sleep(Duration::from_millis(2)); // a new name for the next one
    }
    assert_eq!(info_field(&mut c, "rdb_last_bgsave_status"), "ok");
    let kept = checkpoints(&saves);
    assert_eq!(kept.len(), 2, "{kept:?}");
    let () = redis::cmd("DEL").arg("k0").query(&mut c).unwrap();
    drop(server);
    // The newest save has every key and the last round; the server's later delete is
    // not in it.
    let newest = Server::start(kept.last().unwrap(), &[]);
    let mut c = newest.client();
    let size: i64 = redis::cmd("DBSIZE").query(&mut c).unwrap();
    assert_eq!(size, 501);
    let round: i64 = redis::cmd("GET").arg("round").query(&mut c).unwrap();
    assert_eq!(round, 2);
}

#[test]
fn bgsave_refuses_a_bad_option_and_save_reports_a_failure() {
    let dir = tempdir();
    let data = dir.path().join("data");
    // The save directory cannot be created: a file holds its parent's name.
    let blocker = dir.path().join("blocked");
    std::fs::write(&blocker, b"not a directory").unwrap();
    let saves = blocker.join("saves");
    let server = Server::start(&data, &["--save-dir", saves.to_str().unwrap()]);
    let mut c = server.client();
    let bad = serve_support::error_of(&mut c, &[b"BGSAVE", b"NOW"]);
    assert!(bad.contains("syntax error"), "{bad}");
    let failed = serve_support::error_of(&mut c, &[b"SAVE"]);
    assert!(failed.contains("Not a directory"), "{failed}");
    assert_eq!(info_field(&mut c, "rdb_last_bgsave_status"), "err");
    let () = redis::cmd("SET")
        .arg("still")
        .arg("serving")
        .query(&mut c)
        .unwrap();
}

//! INFO: the sections server, clients, stats, persistence, keyspace (Redis's names and
//! fields where they mean the same thing) and cores (ringkv's per-core figures).

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use bytes::Bytes;

use super::frame::{Frame, db_error, err};
use super::session::REDIS_COMPAT_VERSION;
use super::shared::CoreCtx;

const SECTIONS: [&str; 6] = [
    "server",
    "clients",
    "stats",
    "persistence",
    "keyspace",
    "cores",
];

/// INFO [section ...]: no section, `default`, `all` or `everything` mean all of them.
pub async fn info(ctx: &CoreCtx, args: &[Bytes]) -> Frame {
    let wanted: Vec<String> = args[1..]
        .iter()
        .map(|a| String::from_utf8_lossy(a).to_ascii_lowercase())
        .collect();
    let all = wanted.is_empty()
        || wanted
            .iter()
            .any(|w| matches!(w.as_str(), "default" | "all" | "everything"));
    let db = ctx.db().clone();
    let stats = match ctx.shared.admin.run(move || db.stats()).await {
        Some(Ok(stats)) => stats,
        Some(Err(e)) => return db_error(e),
        None => return err("the server is shutting down"),
    };
    let mut text = String::new();
    for section in SECTIONS {
        if !all && !wanted.iter().any(|w| w == section) {
            continue;
        }
        if !text.is_empty() {
            text.push_str("\r\n");
        }
        write_section(ctx, &stats, section, &mut text);
    }
    Frame::Verbatim(text)
}

fn write_section(ctx: &CoreCtx, stats: &ringkv::Stats, section: &str, out: &mut String) {
    let shared = &ctx.shared;
    let config = &shared.config;
    let metrics = &shared.metrics;
    let sum = |f: &dyn Fn(&super::metrics::CoreMetrics) -> u64| -> u64 {
        metrics.iter().map(|m| f(m)).sum()
    };
    let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    // A line `name:value`; a section's title is `# Title` alone.
    let mut line = |name: &str, value: &dyn std::fmt::Display| {
        let _ = if name.starts_with('#') {
            write!(out, "{name}\r\n")
        } else {
            write!(out, "{name}:{value}\r\n")
        };
    };
    match section {
        "server" => {
            let uptime = shared.started.elapsed().as_secs();
            line("# Server", &"");
            line("redis_version", &REDIS_COMPAT_VERSION);
            line("ringkv_version", &env!("CARGO_PKG_VERSION"));
            line("redis_mode", &"standalone");
            line("os", &std::env::consts::OS);
            line("arch_bits", &(usize::BITS));
            line("multiplexing_api", &"io_uring (glommio)");
            line("process_id", &std::process::id());
            line("run_id", &shared.run_id);
            line("tcp_port", &shared.port);
            line("uptime_in_seconds", &uptime);
            line("uptime_in_days", &(uptime / 86_400));
            line("executor_cores", &config.cores);
            line("this_core", &ctx.local.core());
            line(
                "config_file",
                &config
                    .config_file
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
            );
        }
        "clients" => {
            line("# Clients", &"");
            line("connected_clients", &shared.clients.load(Ordering::Relaxed));
            line("maxclients", &config.maxclients);
            line("blocked_clients", &0);
        }
        "stats" => {
            line("# Stats", &"");
            line(
                "total_connections_received",
                &load(&shared.connections_received),
            );
            line("total_commands_processed", &sum(&|m| m.commands_total()));
            line("total_net_input_bytes", &sum(&|m| load(&m.net_input_bytes)));
            line(
                "total_net_output_bytes",
                &sum(&|m| load(&m.net_output_bytes)),
            );
            line("rejected_connections", &load(&shared.connections_rejected));
            line("keyspace_hits", &sum(&|m| load(&m.keyspace_hits)));
            line("keyspace_misses", &sum(&|m| load(&m.keyspace_misses)));
            line(
                "total_error_replies_protocol",
                &load(&shared.protocol_errors),
            );
            line("expired_keys", &0);
            line("evicted_keys", &0);
        }
        "persistence" => {
            let cores = &stats.cores;
            line("# Persistence", &"");
            line("loading", &0);
            line("durability", &config.durability_name());
            line("aof_enabled", &1);
            line(
                "appendfsync",
                &if config.durability_name() == "sync" {
                    "always"
                } else {
                    "everysec"
                },
            );
            line(
                "group_commits",
                &cores.iter().map(|c| c.commits).sum::<u64>(),
            );
            line("live_bytes", &stats.live_bytes);
            line("disk_bytes", &stats.disk_bytes);
            line(
                "buffered_bytes",
                &cores.iter().map(|c| c.totals.buffered_bytes).sum::<u64>(),
            );
            line("substores", &stats.substores);
            line("splits", &cores.iter().map(|c| c.splits).sum::<u64>());
            line(
                "compacted_extents",
                &cores.iter().map(|c| c.compaction.extents).sum::<u64>(),
            );
            line(
                "background_errors",
                &cores.iter().map(|c| c.background_errors).sum::<u64>(),
            );
            let last_error = cores.iter().find_map(|c| c.background_error.as_deref());
            // One INFO line: the cause without its line breaks.
            line(
                "background_error_last",
                &last_error.unwrap_or("").replace(['\r', '\n'], " "),
            );
            line("dir", &config.dir.display());
        }
        "keyspace" => {
            line("# Keyspace", &"");
            if stats.keys > 0 {
                let expires: u64 = (stats.cores.iter()).map(|c| c.totals.expiring_keys).sum();
                let db0 = format!("keys={},expires={expires},avg_ttl=0", stats.keys);
                line("db0", &db0);
            }
        }
        "cores" => {
            line("# Cores", &"");
            for c in &stats.cores {
                let m = &metrics[c.core];
                let figures = format!(
                    "keys={},live_bytes={},disk_bytes={},substores={},commits={},splits={},\
                     compacted_extents={},background_errors={},queued={},in_flight={},\
                     cache_bytes={},cache_hits={},cache_misses={},connections={},commands={}",
                    c.totals.keys,
                    c.totals.live_bytes,
                    c.totals.disk_bytes,
                    c.substores,
                    c.commits,
                    c.splits,
                    c.compaction.extents,
                    c.background_errors,
                    c.queued,
                    c.in_flight,
                    c.cache_bytes,
                    c.cache_hits,
                    c.cache_misses,
                    load(&m.connections),
                    m.commands_total(),
                );
                line(&format!("core{}", c.core), &figures);
            }
        }
        other => unreachable!("unknown INFO section {other}"),
    }
}

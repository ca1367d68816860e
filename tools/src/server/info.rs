//! INFO: every section Redis 7 prints by default (server, clients, memory,
//! persistence, stats, replication, cpu, modules, errorstats, cluster, keyspace), with
//! Redis's names and fields where they mean the same thing (clients and their tools
//! read `role`, `used_memory`, `cluster_enabled` and the like when they connect), and
//! cores (ringkv's per-core figures). Fields Redis has and ringkv has no meaning for
//! (forks, replication backlogs, Lua) are left out rather than made up; those that
//! describe something ringkv lacks say so with Redis's own value for "none" (role
//! master with no replicas, cluster_enabled 0, maxmemory 0).

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use bytes::Bytes;

use super::frame::{Frame, db_error, err};
use super::session::REDIS_COMPAT_VERSION;
use super::shared::CoreCtx;
use super::system;

/// In Redis's order, ringkv's own `cores` last.
const SECTIONS: [&str; 12] = [
    "server",
    "clients",
    "memory",
    "persistence",
    "stats",
    "replication",
    "cpu",
    "modules",
    "errorstats",
    "cluster",
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
            line("redis_git_sha1", &"00000000");
            line("redis_git_dirty", &0);
            line("ringkv_version", &env!("CARGO_PKG_VERSION"));
            line("redis_mode", &"standalone");
            line("os", &std::env::consts::OS);
            line("arch_bits", &(usize::BITS));
            line("multiplexing_api", &"io_uring (glommio)");
            line("process_id", &std::process::id());
            line("process_supervised", &"no");
            line("run_id", &shared.run_id);
            line("tcp_port", &shared.port);
            line("server_time_usec", &system::unix_micros());
            line("uptime_in_seconds", &uptime);
            line("uptime_in_days", &(uptime / 86_400));
            line("executor_cores", &config.cores);
            line("this_core", &ctx.local.core());
            line(
                "executable",
                &std::env::current_exe().map_or(String::new(), |p| p.display().to_string()),
            );
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
        "memory" => {
            let rss = system::rss_bytes();
            let peak = system::peak_rss_bytes().max(rss);
            let total = system::total_memory_bytes();
            line("# Memory", &"");
            // The process's resident memory: the library allocates outside any one
            // allocator Redis would report on, so used_memory is what the OS charges.
            line("used_memory", &rss);
            line("used_memory_human", &system::human(rss));
            line("used_memory_rss", &rss);
            line("used_memory_rss_human", &system::human(rss));
            line("used_memory_peak", &peak);
            line("used_memory_peak_human", &system::human(peak));
            line("total_system_memory", &total);
            line("total_system_memory_human", &system::human(total));
            line("cache_budget_bytes", &config.cache_bytes);
            line(
                "cache_bytes",
                &stats.cores.iter().map(|c| c.cache_bytes).sum::<u64>(),
            );
            line("maxmemory", &0);
            line("maxmemory_human", &"0B");
            line("maxmemory_policy", &"noeviction");
            line("mem_fragmentation_ratio", &"1.00");
            line("mem_allocator", &"libc");
        }
        "replication" => {
            line("# Replication", &"");
            line("role", &"master");
            line("connected_slaves", &0);
            line("master_failover_state", &"no-failover");
            line("master_replid", &shared.run_id);
            line(
                "master_replid2",
                &"0000000000000000000000000000000000000000",
            );
            line("master_repl_offset", &0);
            line("second_repl_offset", &-1);
            line("repl_backlog_active", &0);
        }
        "cpu" => {
            let (sys, user) = system::cpu_seconds();
            line("# CPU", &"");
            line("used_cpu_sys", &sys);
            line("used_cpu_user", &user);
            line("used_cpu_sys_children", &"0.000000");
            line("used_cpu_user_children", &"0.000000");
        }
        "modules" => line("# Modules", &""),
        "errorstats" => line("# Errorstats", &""),
        "cluster" => {
            line("# Cluster", &"");
            line("cluster_enabled", &0);
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
            line(
                "expired_keys",
                &stats.cores.iter().map(|c| c.expired_purged).sum::<u64>(),
            );
            line("evicted_keys", &0);
        }
        "persistence" => {
            let cores = &stats.cores;
            line("# Persistence", &"");
            line("loading", &0);
            line("async_loading", &0);
            let saves = ctx.shared.saves.state();
            let status = if saves.last_ok { "ok" } else { "err" };
            let took = saves.last_duration.map_or(-1, |d| d.as_secs() as i64);
            let path = saves.last_path.map(|p| p.display().to_string());
            line("rdb_changes_since_last_save", &0);
            line("rdb_bgsave_in_progress", &u8::from(saves.in_progress));
            line("rdb_last_save_time", &saves.last_ok_unix_s);
            line("rdb_last_bgsave_status", &status);
            line("rdb_last_bgsave_time_sec", &took);
            line("rdb_saves_dir", &ctx.shared.config.save_dir.display());
            line("rdb_last_checkpoint", &path.unwrap_or_default());
            line("durability", &config.durability_name());
            line("aof_enabled", &1);
            line("aof_rewrite_in_progress", &0);
            line("aof_rewrite_scheduled", &0);
            line("aof_last_write_status", &"ok");
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
                let ttl_sum: u128 = (stats.cores.iter())
                    .map(|c| c.totals.expiring_ttl_sum_ms)
                    .sum();
                // Redis estimates it by sampling; here it is exact (ms).
                let avg_ttl = ttl_sum.checked_div(u128::from(expires)).unwrap_or(0);
                let db0 = format!("keys={},expires={expires},avg_ttl={avg_ttl}", stats.keys);
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

//! The ringkv benchmark rig as a library: workloads, the runner, the raw-device
//! measurement and the report writers. The `ringkv-bench` binary is a thin CLI on top.

pub mod device;
pub mod kvlog;
pub mod memory;
pub mod peers;
pub mod phase;
pub mod plot;
pub mod report;
pub mod runner;
pub mod workload;
